"""``gpsfleet bench store`` runs on both backends and reports its figures as JSON (the
figures themselves are not asserted: speed is measured from the CLI, not in tests)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import inspect

from app.cli import main
from store.db import Database


def test_bench_store_prints_one_json_object(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "bench",
                "store",
                "--db",
                db_url,
                "--rows",
                "1200",
                "--batch",
                "500",
                "--terminals",
                "7",
                "--reference",
                "--json",
            ]
        )
        == 0
    )
    figures = json.loads(capsys.readouterr().out)
    assert figures["backend"] == ("sqlite" if db_url.startswith("sqlite") else "postgresql")
    assert (figures["rows"], figures["batches"], figures["terminals"], figures["inserted"]) == (
        1200,
        3,
        7,
        1200,
    )
    assert figures["retried_batch_rows"] == figures["duplicates_on_retry"] == 200
    assert figures["rows_per_s"] > 0 and figures["reference_rows_per_s"] > 0
    database = Database(db_url)
    try:
        leftovers = [name for name in inspect(database.engine).get_table_names() if name.startswith("bench_")]
    finally:
        database.dispose()
    assert leftovers == []  # the reference table is dropped


def test_bench_store_refuses_nonsense(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    assert main(["bench", "store", "--db", sqlite_url, "--rows", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
