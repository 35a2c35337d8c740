"""The terminal view lists the terminal's swaps (rules 5 and 6): old and new terminal or SIM,
when, the vehicle, why, the symptom and who did it, in English and in Chinese.  Its own module,
so the swap it makes changes only this module's database."""

from __future__ import annotations

import re

from fleet import service
from store.db import open_database
from tests.browser.support import LiveApi
from tests.browser.test_dashboard_browser import chromium, text_of


def test_the_terminal_view_lists_its_swaps(live_api: LiveApi) -> None:
    fleet = live_api.fleet
    database = open_database(live_api.database_url)
    try:
        with database.engine.begin() as conn:
            service.swap_terminal(
                conn,
                old_device_id=fleet.moving,
                new_device_id=fleet.in_stock,
                performed_by="Li Qiang",
                reason="no GNSS fix",
                symptom="antenna cable cut",
            )
    finally:
        database.dispose()
    link = f"{live_api.base}/dashboard/#token={fleet.tokens['admin']}&view=terminal/{fleet.in_stock}"

    dom = chromium(f"{link}&lang=en", "--dump-dom")
    row = re.search(r'<tr data-swap="\d+">.*?</tr>', dom, re.S)
    assert row, text_of(dom)[-2000:]
    seen = text_of(row.group(0))
    for fact in (
        f"{fleet.moving} → {fleet.in_stock}",
        "terminal",
        "沪A12345",
        "no GNSS fix",
        "antenna cable cut",
    ):
        assert fact in seen, fact
    assert "Li Qiang" in seen and "Swaps" in text_of(dom) and "Old → new" in text_of(dom)

    chinese = text_of(chromium(f"{link}&lang=zh", "--dump-dom"))
    assert "更换记录" in chinese and "原 → 新" in chinese and "操作人" in chinese
