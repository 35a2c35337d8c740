"""Shared foundation: the normalised message model, its vocabulary and the typed settings."""
