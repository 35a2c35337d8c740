"""The API reference renders in a real browser on a machine without internet access (as
this one is): every file it needs comes from gpsfleet itself."""

from __future__ import annotations

from tests.browser.support import LiveApi
from tests.browser.test_dashboard_browser import chromium, text_of


def test_the_api_reference_renders_offline(live_api: LiveApi) -> None:
    dom = chromium(f"{live_api.base}/docs", "--dump-dom")
    seen = text_of(dom.replace("<wbr>", "").replace("\u200b", ""))  # Swagger UI breaks paths at /
    assert "opblock" in dom, seen[:2000]  # Swagger UI drew the operations
    for path in ("/api/v1/tokens", "/api/v1/terminals", "/health"):
        assert path in seen, path
    assert "Authorize" in seen  # the bearer token can be entered in the page
