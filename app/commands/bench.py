"""``gpsfleet bench``: the benchmarks kept in the repo (store, decode, ingest, import, alerts)."""

from __future__ import annotations

import argparse
from types import ModuleType

from benchmarks import alerts as alerts_bench
from benchmarks import dashboard as dashboard_bench
from benchmarks import decode as decode_bench
from benchmarks import fleet_import
from benchmarks import ingest as ingest_bench
from benchmarks import store as store_bench

# Each module in ``benchmarks`` has register(subparsers); listed explicitly.
BENCHMARKS: list[ModuleType] = [
    store_bench,
    dashboard_bench,
    decode_bench,
    fleet_import,
    alerts_bench,
    ingest_bench,
]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="run a benchmark and print its figures")
    bench_sub = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for module in BENCHMARKS:
        module.register(bench_sub)
