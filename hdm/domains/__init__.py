"""hdm.domains."""
