"""Fixtures of the warranty tests: the fleet tests' migrated databases."""

from tests.fleet.conftest import database, sqlite_database

__all__ = ["database", "sqlite_database"]
