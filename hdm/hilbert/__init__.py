"""hdm.hilbert."""
