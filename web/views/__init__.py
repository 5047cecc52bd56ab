"""HTTP handlers of the portal, one blueprint module per feature."""
