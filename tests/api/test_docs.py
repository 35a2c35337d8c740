"""/docs serves the API reference with its own Swagger UI files, no CDN (a NOC network
may have no internet access); like /openapi.json it needs no token."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_the_docs_page_loads_its_files_from_this_server(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    scripts_and_styles = [line for line in page.text.splitlines() if "src=" in line or "href=" in line]
    assert scripts_and_styles and all("http" not in line for line in scripts_and_styles), scripts_and_styles
    assert "/docs/assets/swagger-ui-bundle.js" in page.text and "/openapi.json" in page.text
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "javascript" in bundle.headers["content-type"]
    assert len(bundle.content) > 100_000
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert client.get("/docs/assets/nothing.js").status_code == 404
