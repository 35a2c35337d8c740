"""Benchmarks run from the CLI (``gpsfleet bench …``); figures, never timed assertions in tests."""
