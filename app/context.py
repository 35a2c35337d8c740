"""Helpers every command shares: settings from arguments, and opening the store."""

from __future__ import annotations

import argparse
import sys

from core.settings import Settings, load_settings
from store.db import Database, DatabaseUnavailable, open_database


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", help="sqlite:///PATH or postgresql://… (also GPSFLEET_DB)")


def settings_from(args: argparse.Namespace, **overrides: object) -> Settings:
    """Load the settings once for a command: file, environment, then its flags."""
    return load_settings(getattr(args, "config", None), db=getattr(args, "db", None), **overrides)


def database_or_exit(settings: Settings, *, migrate: bool = True) -> Database:
    """Open the configured database or exit 2 naming it (password masked). No fallback."""
    try:
        return open_database(settings.db, pool_size=settings.store.pool_size, migrate=migrate)
    except DatabaseUnavailable as exc:
        print(f"gpsfleet: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
