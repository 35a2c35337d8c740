"""A track as a file: GeoJSON (RFC 7946), GPX 1.1 and CSV, written as a stream of text
chunks so that a month of fixes never sits in memory as one document."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from core.messages import format_time
from store.queries import TrackPoint

_CHUNK = 500  # points per yielded chunk


def geojson(points: Iterable[TrackPoint], terminal_id: str) -> Iterator[str]:
    """A FeatureCollection: one Point feature per fix (with its values as properties),
    then the LineString through them (when there are two or more)."""
    yield '{"type":"FeatureCollection","features":['
    line: list[str] = []
    first = last = None
    parts: list[str] = []
    for point in points:
        position = _position(point)
        line.append(position)
        first = first or point
        last = point
        properties = point.to_json_dict()
        del properties["lat"], properties["lon"]
        parts.append(
            ("," if len(line) > 1 else "")
            + '{"type":"Feature","geometry":{"type":"Point","coordinates":'
            + position
            + '},"properties":'
            + json.dumps(properties, separators=(",", ":"))
            + "}"
        )
        if len(parts) >= _CHUNK:
            yield "".join(parts)
            parts.clear()
    yield "".join(parts)
    if len(line) >= 2 and first is not None and last is not None:
        summary = {
            "terminal_id": terminal_id,
            "start": format_time(first.fix_time),
            "end": format_time(last.fix_time),
            "points": len(line),
        }
        yield ',{"type":"Feature","geometry":{"type":"LineString","coordinates":['
        for i in range(0, len(line), _CHUNK * 4):
            yield ("," if i else "") + ",".join(line[i : i + _CHUNK * 4])
        yield ']},"properties":' + json.dumps(summary, separators=(",", ":")) + "}"
    yield "]}\n"


def _position(point: TrackPoint) -> str:
    if point.altitude_m is None:
        return f"[{point.lon!r},{point.lat!r}]"
    return f"[{point.lon!r},{point.lat!r},{point.altitude_m!r}]"


GPX_NAMESPACE = "http://www.topografix.com/GPX/1/1"
TRACKPOINT_EXTENSION = "http://www.garmin.com/xmlschemas/TrackPointExtension/v2"


def gpx(points: Iterable[TrackPoint], terminal_id: str) -> Iterator[str]:
    """GPX 1.1: one track, one segment; speed (m/s) and course in Garmin's
    TrackPointExtension v2, which most GPX readers understand."""
    yield (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<gpx version="1.1" creator="gpsfleet" xmlns="{GPX_NAMESPACE}" '
        f'xmlns:gpxtpx="{TRACKPOINT_EXTENSION}">\n'
        f"<trk><name>{escape(terminal_id)}</name><trkseg>\n"
    )
    parts: list[str] = []
    for point in points:
        parts.append(_trackpoint(point))
        if len(parts) >= _CHUNK:
            yield "".join(parts)
            parts.clear()
    yield "".join(parts)
    yield "</trkseg></trk>\n</gpx>\n"


def _trackpoint(point: TrackPoint) -> str:
    # GPX fixes the order of a trkpt's children: ele, time, ..., sat, hdop, ..., extensions
    text = f"<trkpt lat={quoteattr(repr(point.lat))} lon={quoteattr(repr(point.lon))}>"
    if point.altitude_m is not None:
        text += f"<ele>{point.altitude_m!r}</ele>"
    text += f"<time>{format_time(point.fix_time)}</time>"
    if point.satellites is not None:
        text += f"<sat>{max(point.satellites, 0)}</sat>"
    if point.hdop is not None:
        text += f"<hdop>{point.hdop!r}</hdop>"
    if point.speed_kmh is not None or point.course is not None:
        text += "<extensions><gpxtpx:TrackPointExtension>"
        if point.speed_kmh is not None:
            text += f"<gpxtpx:speed>{round(point.speed_kmh / 3.6, 3)!r}</gpxtpx:speed>"
        if point.course is not None:
            text += f"<gpxtpx:course>{point.course % 360!r}</gpxtpx:course>"
        text += "</gpxtpx:TrackPointExtension></extensions>"
    return text + "</trkpt>\n"


CSV_COLUMNS = (
    "terminal_id",
    "fix_time",
    "received_at",
    "lat",
    "lon",
    "altitude_m",
    "speed_kmh",
    "course",
    "satellites",
    "hdop",
    "valid",
    "protocol",
    "flags",
    "alarms",
    "attributes",
)


def csv_rows(points: Iterable[TrackPoint], terminal_id: str) -> Iterator[str]:
    """CSV with a header row; times RFC 3339 UTC, alarms joined by ``;``, attributes JSON."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for count, point in enumerate(points, 1):
        writer.writerow(_csv_values(point))
        if count % _CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _csv_values(point: TrackPoint) -> list[Any]:
    return [
        point.terminal_id,
        format_time(point.fix_time),
        format_time(point.received_at),
        point.lat,
        point.lon,
        _blank(point.altitude_m),
        _blank(point.speed_kmh),
        _blank(point.course),
        _blank(point.satellites),
        _blank(point.hdop),
        "true" if point.valid else "false",
        point.protocol,
        point.flags,
        ";".join(point.alarms),
        json.dumps(point.attributes, separators=(",", ":")) if point.attributes else "",
    ]


def _blank(value: Any) -> Any:
    return "" if value is None else value


@dataclass(frozen=True, slots=True)
class ExportFormat:
    media_type: str
    extension: str
    write: Callable[[Iterable[TrackPoint], str], Iterator[str]]


FORMATS: dict[str, ExportFormat] = {
    "geojson": ExportFormat("application/geo+json", "geojson", geojson),
    "gpx": ExportFormat("application/gpx+xml", "gpx", gpx),
    "csv": ExportFormat("text/csv; charset=utf-8", "csv", csv_rows),
}
