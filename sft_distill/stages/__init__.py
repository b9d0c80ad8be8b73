"""Stages: each streams in and out (generate, gates, judge) and counts its own drops."""
