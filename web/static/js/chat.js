// The support chat widget and inbox.
