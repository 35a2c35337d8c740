"""Latest positions, keyset-paged tracks with a range limit, and the three export formats
parsed back, on both backends."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import pytest

from store.db import Database
from store.export import CSV_COLUMNS, FORMATS, csv_rows, geojson, gpx
from store.ingest import PositionWriter
from store.queries import (
    InvalidCursor,
    TrackQueryError,
    TrackRangeTooLong,
    decode_cursor,
    encode_cursor,
    iter_track,
    latest_positions,
    terminal_states,
    track,
)
from store.records import Flag, IngestBatch
from tests.store.support import T0, event, position

END = T0 + timedelta(days=1)


def write(database: Database, *rows: object) -> None:
    batch = IngestBatch()
    for row in rows:
        (batch.positions if hasattr(row, "fix_time") else batch.events).append(row)  # type: ignore[arg-type]
    PositionWriter(database).write(batch)


def test_latest_positions_of_every_terminal_or_of_some(database: Database) -> None:
    write(
        database,
        position("A", 0, lat=1.0),
        position("A", 60, lat=2.0, attributes={"power_v": 12.2, "serial": 7}),
        position("B", 30, lat=3.0),
        position("C", 30, flags=Flag.ZERO),  # only a flagged fix: no latest position
        event("D", 10),  # never sent a fix
    )
    with database.engine.connect() as conn:
        latest = latest_positions(conn)
        some = latest_positions(conn, {"B", "C", "nobody"})
        none = latest_positions(conn, set())
        states = terminal_states(conn)
    assert [(p.terminal_id, p.lat) for p in latest] == [("A", 2.0), ("B", 3.0)]
    assert latest[0].health == {"power_v": 12.2} and latest[0].attributes["serial"] == 7
    assert latest[0].fix_time == T0 + timedelta(seconds=60)
    assert [p.terminal_id for p in some] == ["B"]
    assert none == []
    assert [s.terminal_id for s in states] == ["A", "B", "C", "D"]
    assert states[3].fix_time is None and states[3].last_seen == event("D", 10).received_at
    assert latest[0].to_json_dict()["fix_time"] == "2026-11-01T08:01:00Z"


def test_a_track_is_paged_by_cursor_without_gaps_or_repeats(database: Database) -> None:
    write(database, *[position("A", s) for s in range(0, 250, 10)], position("B", 5))
    write(database, position("A", 15, flags=Flag.JUMP))
    seen: list[datetime] = []
    after = None
    with database.engine.connect() as conn:
        while True:
            page = track(conn, "A", T0, END, 10, after)
            seen.extend(p.fix_time for p in page.points)
            assert len(page.points) <= 10
            if page.next_after is None:
                break
            after = decode_cursor(encode_cursor(page.next_after))
        assert seen == [T0 + timedelta(seconds=s) for s in range(0, 250, 10)]
        with_flagged = track(conn, "A", T0, T0 + timedelta(seconds=20), 100, include_flagged=True)
        assert [p.flags for p in with_flagged.points] == [0, 0, Flag.JUMP, 0]
        window = track(conn, "A", T0 + timedelta(seconds=30), T0 + timedelta(seconds=50), 100)
        assert [p.fix_time.second for p in window.points] == [30, 40, 50]  # both ends included
        exact = track(conn, "A", T0, END, 25)
        assert len(exact.points) == 25 and exact.next_after is None
    point = window.points[0]
    assert (point.terminal_id, point.protocol, point.valid, point.alarms, point.attributes) == (
        "A",
        "gt06",
        True,
        [],
        {},
    )


def test_a_range_longer_than_the_maximum_is_refused_naming_the_maximum(database: Database) -> None:
    with database.engine.connect() as conn:
        with pytest.raises(TrackRangeTooLong, match="at most 31 days"):
            track(conn, "A", T0, T0 + timedelta(days=31, seconds=1), 10, max_days=31)
        assert track(conn, "A", T0, T0 + timedelta(days=31), 10, max_days=31).points == []
        with pytest.raises(TrackQueryError, match="end is before start"):
            track(conn, "A", END, T0, 10)
        with pytest.raises(TrackQueryError, match="time zone"):
            track(conn, "A", T0.replace(tzinfo=None), END, 10)


@pytest.mark.parametrize("cursor", ["", "!!", "bm90IGEgbnVtYmVy", "OTk5OTk5OTk5OTk5OTk5OTk5OTk5"])
def test_a_forged_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)


def test_iter_track_reads_a_long_track_in_chunks(database: Database) -> None:
    write(database, *[position("A", s) for s in range(120)])
    points = list(iter_track(database.engine, "A", T0, END, chunk=7))
    assert [p.fix_time for p in points] == [T0 + timedelta(seconds=s) for s in range(120)]


def exported(database: Database, name: str) -> str:
    points = iter_track(database.engine, "A&<1>", T0, END, chunk=3)
    return "".join(FORMATS[name].write(points, "A&<1>"))


@pytest.fixture
def a_track(database: Database) -> Database:
    write(
        database,
        position("A&<1>", 0, alarms=["sos"], attributes={"power_v": 12.5}),
        position("A&<1>", 10, altitude_m=None, satellites=None, hdop=None),
        position("A&<1>", 20, speed_kmh=None, course=None),
    )
    return database


def test_geojson_export_parses_back(a_track: Database) -> None:
    document = json.loads(exported(a_track, "geojson"))
    assert document["type"] == "FeatureCollection"
    points = [f for f in document["features"] if f["geometry"]["type"] == "Point"]
    (line,) = [f for f in document["features"] if f["geometry"]["type"] == "LineString"]
    assert [p["geometry"]["coordinates"] for p in points] == line["geometry"]["coordinates"]
    first = position("A&<1>", 0)
    assert points[0]["geometry"]["coordinates"] == [first.lon, first.lat, 35.0]
    assert len(points[1]["geometry"]["coordinates"]) == 2  # no altitude
    assert points[0]["properties"]["fix_time"] == "2026-11-01T08:00:00Z"
    assert points[0]["properties"]["alarms"] == ["sos"]
    assert points[0]["properties"]["attributes"] == {"power_v": 12.5}
    assert line["properties"] == {
        "terminal_id": "A&<1>",
        "start": "2026-11-01T08:00:00Z",
        "end": "2026-11-01T08:00:20Z",
        "points": 3,
    }


def test_gpx_export_parses_back(a_track: Database) -> None:
    ns = {
        "g": "http://www.topografix.com/GPX/1/1",
        "x": "http://www.garmin.com/xmlschemas/TrackPointExtension/v2",
    }
    root = ET.fromstring(exported(a_track, "gpx"))
    assert root.tag == "{http://www.topografix.com/GPX/1/1}gpx" and root.get("version") == "1.1"
    assert root.findtext("g:trk/g:name", namespaces=ns) == "A&<1>"
    points = root.findall("g:trk/g:trkseg/g:trkpt", ns)
    assert len(points) == 3
    first = position("A&<1>", 0)
    assert (float(points[0].get("lat", "")), float(points[0].get("lon", ""))) == (first.lat, first.lon)
    assert points[0].findtext("g:ele", namespaces=ns) == "35.0"
    assert points[0].findtext("g:time", namespaces=ns) == "2026-11-01T08:00:00Z"
    assert (points[0].findtext("g:sat", namespaces=ns), points[0].findtext("g:hdop", namespaces=ns)) == (
        "9",
        "0.9",
    )
    speed = points[0].findtext("g:extensions/x:TrackPointExtension/x:speed", namespaces=ns)
    assert speed is not None and abs(float(speed) - 42.5 / 3.6) < 0.001
    assert points[1].find("g:ele", ns) is None and points[1].find("g:sat", ns) is None
    assert points[2].find("g:extensions", ns) is None
    assert [child.tag.split("}")[1] for child in points[0]] == ["ele", "time", "sat", "hdop", "extensions"]


def test_csv_export_parses_back(a_track: Database) -> None:
    rows = list(csv.DictReader(io.StringIO(exported(a_track, "csv"))))
    assert len(rows) == 3
    first = rows[0]
    assert (first["terminal_id"], first["fix_time"], first["valid"]) == (
        "A&<1>",
        "2026-11-01T08:00:00Z",
        "true",
    )
    assert float(first["lat"]) == position("A", 0).lat
    assert (first["alarms"], json.loads(first["attributes"])) == ("sos", {"power_v": 12.5})
    assert (rows[1]["altitude_m"], rows[1]["satellites"], rows[1]["attributes"]) == ("", "", "")


def test_an_empty_track_exports_as_valid_empty_documents() -> None:
    assert json.loads("".join(geojson([], "A"))) == {"type": "FeatureCollection", "features": []}
    assert ET.fromstring("".join(gpx([], "A"))).find("{http://www.topografix.com/GPX/1/1}trk") is not None
    assert list(csv.reader(io.StringIO("".join(csv_rows([], "A"))))) == [list(CSV_COLUMNS)]
