"""hdm.pipelines."""
