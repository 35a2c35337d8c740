"""``/metrics``: Prometheus text, and the request counters and latencies that feed it.

Everything registers on prometheus_client's default registry, so the gateway and the
alert engine add their metrics by simply defining them at module level.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import STAFF_ROLES, Principal, require_roles

REQUESTS = Counter(
    "gpsfleet_api_requests_total", "API requests answered, by route and status", ["method", "route", "status"]
)
LATENCY = Histogram(
    "gpsfleet_api_request_seconds",
    "API request latency, by route",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(_principal: Principal = Depends(require_roles(*STAFF_ROLES))) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts every HTTP request by its route template (not its path: bounded labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            REQUESTS.labels(method, route, str(status_code)).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - started)
