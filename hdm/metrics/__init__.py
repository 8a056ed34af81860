"""hdm.metrics."""
