"""hdm.data."""
