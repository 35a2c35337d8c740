"""The symptoms line of an automatic ticket reads as words, never as a dict dump."""

from __future__ import annotations

from alerts.symptoms import describe_fault


def test_the_rules_evidence_reads_as_words_with_utc_times() -> None:
    text = describe_fault(
        "no_fix",
        {
            "fault": {"last_fix_time": "2026-11-27T17:23:29+08:00"},
            "first_seen": "2026-11-27T09:23:34.485158+00:00",
            "last_seen": "2026-11-27T09:23:44.485399+00:00",
            "alert_id": 11,
            "last_frames": [{"raw_hex": "7e02"}],
        },
    )
    assert text == (
        "no fix: last fix 2026-11-27 09:23:29 UTC; "
        "first seen 2026-11-27 09:23:34 UTC, last seen 2026-11-27 09:23:44 UTC"
    )


def test_values_keep_their_units_and_precision() -> None:
    assert describe_fault("frozen_fix", {"fault": {"lat": 31.243884, "lon": 121.467737}}) == (
        "frozen fix: latitude 31.243884, longitude 121.467737"
    )
    assert describe_fault("backup_battery_low", {"fault": {"battery_level": 5.0, "battery_v": None}}) == (
        "backup battery low: backup battery 5 %"
    )
    assert describe_fault("sim_mismatch", {"fault": {"reported": "8986001", "registered": "8986002"}}) == (
        "sim mismatch: the terminal reports SIM 8986001, the registry has SIM 8986002"
    )
    assert describe_fault("clock_drift", {"drift_s": -3725}) == "clock drift: clock off by 1 h 2 min"
    assert describe_fault("no_fix", {"fault": {"last_fix_time": None}}) == "no fix: no fix ever"
    assert describe_fault("gnss_antenna_cut", {}) == "gnss antenna cut"
    assert describe_fault("power_cut", {"fault": {"alarm": "power_cut"}}) == (
        "power cut: raised by the terminal's own alarm"
    )
    assert describe_fault("data_errors", {"fault": {"decode_errors_1h": 7, "checksum_errors_1h": 0}}) == (
        "data errors: 7 decode errors in the last hour, 0 checksum errors in the last hour"
    )
