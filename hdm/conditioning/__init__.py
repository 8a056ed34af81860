"""hdm.conditioning."""
