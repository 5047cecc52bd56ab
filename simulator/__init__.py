"""The meter simulator: sends readings in the seed format to ems.readings."""
