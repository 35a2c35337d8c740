"""Helpers every command shares: settings from arguments, and opening the store."""

from __future__ import annotations

import argparse
import os
import sys
import tomllib

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from core.settings import Settings, load_settings
from store.db import Database, DatabaseUnavailable, open_database


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", help="sqlite:///PATH or postgresql://… (also GPSFLEET_DB)")


def positive_seconds(text: str) -> float:
    """An argparse type: a duration in seconds, > 0 (``--duration -5`` is a typo, not a run)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be a number > 0, not {text!r}")
    return value


def settings_from(args: argparse.Namespace, **overrides: object) -> Settings:
    """Load the settings once for a command: file, environment, then its flags.

    Invalid settings exit 2 with one line per problem (never a traceback)."""
    try:
        return load_settings(getattr(args, "config", None), db=getattr(args, "db", None), **overrides)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        print("gpsfleet: invalid settings:\n  " + "\n  ".join(problems), file=sys.stderr)
        raise SystemExit(2) from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        path = getattr(args, "config", None) or os.environ.get("GPSFLEET_CONFIG", "")
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"gpsfleet: cannot read the settings file {path}: {detail}", file=sys.stderr)
        raise SystemExit(2) from exc


def _describe(error: ErrorDetails) -> str:
    field = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


def database_or_exit(settings: Settings, *, migrate: bool = True) -> Database:
    """Open the configured database or exit 2 naming it (password masked). No fallback."""
    try:
        return open_database(
            settings.db,
            pool_size=settings.store.pool_size,
            migrate=migrate,
            timescale=settings.store.timescale,
        )
    except DatabaseUnavailable as exc:
        print(f"gpsfleet: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
