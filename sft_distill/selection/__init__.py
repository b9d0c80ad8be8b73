"""Which samples are kept: thresholds and votes, dedup, caps and split, one finalize for all."""
