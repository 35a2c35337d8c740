"""Warranty: coverage of a terminal on a day, extended contracts, and repair quotes."""
