"""Per-frame tallies reach their Prometheus counters whenever metrics are collected."""

from __future__ import annotations

from prometheus_client import REGISTRY

from gateway import metrics

NAME = "gpsfleet_gateway_frames_in_total"


def test_a_tally_is_folded_into_its_counter_once_per_increment() -> None:
    labels = {"protocol": "tally-test", "transport": "tcp"}
    counted = metrics.tally(metrics.FRAMES_IN, "tally-test", "tcp")
    assert metrics.tally(metrics.FRAMES_IN, "tally-test", "tcp") is counted  # shared by sessions
    before = REGISTRY.get_sample_value(NAME, labels) or 0.0
    counted.count += 3
    assert REGISTRY.get_sample_value(NAME, labels) == before + 3
    assert REGISTRY.get_sample_value(NAME, labels) == before + 3  # a second scrape adds nothing
    counted.count += 2
    assert REGISTRY.get_sample_value(NAME, labels) == before + 5
