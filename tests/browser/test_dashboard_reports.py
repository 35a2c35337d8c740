"""The Reports view in a real Chromium: the ticket report of a seeded month (June 2025, in
Shanghai's zone) as tables, in English and in Chinese; the figures are the API's; a role that
may not read reports neither sees the view nor gets it by a link; a period the API refuses
shows the API's own message.  Its own module, so the tickets it opens stay in its database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from alerts import tickets as ticket_store
from api.auth import create_token
from core.settings import Settings
from fleet import service
from fleet.validation import iccid_for, imei_for
from store.db import open_database
from tests.browser.cdp import Browser
from tests.browser.support import LiveApi

JUNE = datetime(2025, 6, 3, 2, tzinfo=UTC)  # June in UTC and in Shanghai alike
MAY = datetime(2025, 5, 2, tzinfo=UTC)
REPORT_MODEL = "TK103"
ZONE = "Asia/Shanghai"


@dataclass
class June:
    finance: str  # a token of a role that may read reports


@pytest.fixture(scope="module")
def june(live_api: LiveApi) -> Iterator[June]:
    """A customer whose three TK103 terminals were installed in May 2025, and three tickets
    opened in June 2025: one repaired in time, one cancelled, one never answered."""
    database = open_database(live_api.database_url)
    settings = Settings(db=live_api.database_url)
    devices = [imei_for(n) for n in (21, 22, 23)]
    try:
        with database.engine.begin() as conn:
            service.create_terminal_model(conn, name=REPORT_MODEL, protocol="gt06", warranty_months=12)
            river = service.create_customer(conn, name="River Taxis")
            for n, device in enumerate(devices, 21):
                plate = f"苏E{n}001"
                service.create_vehicle(conn, plate=plate, customer_id=river["id"], vin=None)
                service.create_terminal(conn, device_id=device, model=REPORT_MODEL, purchased_on=MAY.date())
                service.create_sim(conn, iccid=iccid_for(n), msisdn=f"139000000{n}")
                service.install(conn, device_id=device, plate=plate, iccid=iccid_for(n), at=MAY)

            def opened(terminal: str, at: datetime, fault: str, priority: str) -> int:
                row = ticket_store.open_by_hand(
                    conn, settings, terminal_id=terminal, actor="desk", at=at, fault=fault, priority=priority
                )
                return int(row["id"])

            def move(ticket: int, *steps: tuple[str, float]) -> None:
                for state, hours in steps:
                    at = JUNE + timedelta(hours=hours)
                    ticket_store.transition(conn, ticket, state, actor="manager", at=at)

            repaired = opened(devices[0], JUNE, "gnss_fault", "high")
            move(
                repaired,
                ("approved", 1),
                ("dispatched", 1),
                ("in_progress", 5),
                ("resolved", 20),
                ("closed", 21),
            )
            cancelled = opened(devices[1], JUNE + timedelta(days=7), "weak_gsm", "normal")
            move(cancelled, ("cancelled", 24 * 7 + 2))
            opened(devices[2], JUNE + timedelta(days=17), "weak_gsm", "urgent")
        yield June(finance=create_token(database.engine, role="finance", name="Chen finance").token)
    finally:
        database.dispose()


def _report(live_api: LiveApi, token: str, **params: str) -> Any:
    answer = httpx.get(
        f"{live_api.base}/api/v1/reports/tickets",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()


def _open_reports(live_api: LiveApi, token: str, lang: str) -> Browser:
    browser = Browser(f"{live_api.base}/dashboard/#token={token}&lang={lang}&view=reports")
    browser.wait_for("document.getElementById('view-reports')")
    return browser


def _ask(browser: Browser, period: str, tz: str) -> None:
    """Type a period and a zone and press Show, as a user does."""
    browser.evaluate(
        f"""(() => {{
          document.getElementById('report-period').value = {json.dumps(period)};
          document.getElementById('report-tz').value = {json.dumps(tz)};
          document.querySelector('#report-form button[type=submit]').click();
        }})()"""
    )


def _cells(browser: Browser, table: str) -> dict[str, list[str]]:
    """The rows of one report table: data-row key -> the cells' texts."""
    rows: dict[str, list[str]] = browser.evaluate(
        f"""Object.fromEntries([...document.querySelectorAll('#{table} tbody tr[data-row]')]
          .map(r => [r.dataset.row, [...r.cells].map(c => c.textContent.trim())]))"""
    )
    return rows


def _shown(browser: Browser) -> dict[str, dict[str, list[str]]]:
    tables = ("volumes", "warranty", "sla", "hours", "source", "priority", "fault", "model")
    return {name: _cells(browser, f"report-{name}") for name in tables}


def test_a_month_s_report_in_english_and_in_chinese(live_api: LiveApi, june: June) -> None:
    browser = _open_reports(live_api, june.finance, "en")
    try:
        browser.wait_for("document.getElementById('nav-reports')?.classList.contains('active')")
        # by default: last month in the browser's zone, as the API reckons it
        zone = browser.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
        assert browser.evaluate("document.getElementById('report-tz').value") == zone
        default = _report(live_api, june.finance, tz=zone)["period"]["label"]
        assert browser.evaluate("document.getElementById('report-period').value") == default
        browser.wait_for(f"document.getElementById('report-span')?.textContent.includes('{default}')")

        _ask(browser, "2025-06", ZONE)
        browser.wait_for(
            "document.getElementById('report-span')?.textContent.startsWith('2025-06, Asia/Shanghai')"
        )
        report = _report(live_api, june.finance, period="2025-06", tz=ZONE)
        counts = report["tickets"]
        assert (counts["opened"], counts["cancelled"], counts["resolved_in_period"]) == (3, 1, 1)
        english = _shown(browser)
        assert english["volumes"]["opened"] == ["Opened in period", "3"]
        assert english["volumes"]["cancelled"] == ["of them cancelled", "1"]
        assert english["volumes"]["resolved_in_period"][1] == "1"
        assert english["volumes"]["closed_in_period"][1] == str(counts["closed_in_period"])
        assert english["volumes"]["open_at_end"][1] == str(counts["open_at_end"])
        response, repair = report["sla"]["response"], report["sla"]["repair"]
        assert (response["met"], response["missed"], response["met_percent"]) == (1, 1, 50.0)
        assert english["sla"]["response"] == ["Response", "1", "1", "0", "50.0 %"]
        assert english["sla"]["repair"] == [
            "Repair",
            str(repair["met"]),
            str(repair["missed"]),
            str(repair["pending"]),
            f"{repair['met_percent']:.1f} %",
        ]
        assert english["hours"]["response"] == ["Response", "1", "1.0", "1.0", "1.0"]
        assert english["hours"]["repair"] == ["Repair", "1", "20.0", "20.0", "20.0"]
        assert english["priority"] == {
            "urgent": ["urgent", "1", "33 %"],
            "high": ["high", "1", "33 %"],
            "normal": ["normal", "1", "33 %"],
        }
        assert english["fault"]["weak_gsm"] == ["Weak GSM", "2", "67 %"]
        assert english["fault"]["gnss_fault"] == ["GNSS module fault", "1", "33 %"]
        assert english["source"] == {"manual": ["by hand", "3", "100 %"]}
        [model] = report["by_model"]
        assert (model["terminals"], model["tickets_per_100_terminals"]) == (3, 100.0)
        assert english["model"][REPORT_MODEL][:4] == [REPORT_MODEL, "3", "3", "100.0"]
        faults = english["model"][REPORT_MODEL][4]
        assert "Weak GSM 2" in faults and "GNSS module fault 1" in faults
        assert report["warranty"] == {"in": 3, "out": 0, "unknown": 0}
        assert english["warranty"]["in"] == ["In warranty", "3", "100 %"]
        assert english["warranty"]["out"] == ["Out of warranty", "0", "0 %"]
        page = browser.evaluate("document.getElementById('view-reports').innerText")
        for heading in (
            "Ticket report",
            "Service level (SLA)",
            "Hours to response and repair",
            "By terminal model",
        ):
            assert heading in page, heading

        browser.evaluate(
            "[...document.querySelectorAll('#lang button')].find(b => b.textContent === '中文').click()"
        )
        browser.wait_for("document.getElementById('nav-reports')?.textContent === '报表'")
        browser.wait_for("document.getElementById('report-volumes')")
        chinese = _shown(browser)
        assert chinese["volumes"]["opened"] == ["本期新开", "3"]
        assert chinese["sla"]["response"] == ["响应", "1", "1", "0", "50.0 %"]
        assert chinese["fault"]["weak_gsm"] == ["GSM 信号弱", "2", "67 %"]
        assert chinese["priority"]["urgent"] == ["紧急", "1", "33 %"]
        assert chinese["source"] == {"manual": ["人工开单", "3", "100 %"]}
        page = browser.evaluate("document.getElementById('view-reports').innerText")
        for heading in ("工单报表", "服务时限（SLA）", "达标率", "中位数", "按终端型号", "每百台终端工单数"):
            assert heading in page, heading
        assert "Opened in period" not in page and "Median" not in page
        assert (
            browser.evaluate("document.getElementById('report-period').value") == "2025-06"
        )  # kept across the switch
    finally:
        browser.close()


@pytest.mark.parametrize("who", ["technician", "harbour"])
def test_a_role_that_may_not_read_reports_does_not_get_them(live_api: LiveApi, who: str) -> None:
    browser = _open_reports(live_api, live_api.fleet.tokens[who], "en")
    try:
        browser.wait_for("document.getElementById('report-refused')")
        refused = browser.evaluate("document.getElementById('report-refused').textContent")
        assert "admin, manager and finance" in refused and "may not read them" in refused
        assert browser.evaluate("document.getElementById('nav-reports')") is None
        assert browser.evaluate(
            "document.getElementById('report') === null && !document.getElementById('report-form')"
        )
        assert (
            httpx.get(
                f"{live_api.base}/api/v1/reports/tickets",
                headers={"Authorization": f"Bearer {live_api.fleet.tokens[who]}"},
                timeout=10,
            ).status_code
            == 403
        )  # and the API, which decides, refuses too
    finally:
        browser.close()


def test_a_period_the_api_refuses_shows_its_message(live_api: LiveApi, june: June) -> None:
    browser = _open_reports(live_api, june.finance, "en")
    try:
        browser.wait_for("document.getElementById('report-span')")
        for period, tz in (("2025-13", ZONE), ("June", ZONE), ("2025-06", "Mars/Olympus")):
            answer = httpx.get(
                f"{live_api.base}/api/v1/reports/tickets",
                params={"period": period, "tz": tz},
                headers={"Authorization": f"Bearer {june.finance}"},
                timeout=10,
            )
            assert answer.status_code == 422
            message = answer.json()["detail"]
            _ask(browser, period, tz)
            browser.wait_for(
                f"document.getElementById('report-error')?.textContent === {json.dumps('Error: ' + message)}"
            )
            assert (
                browser.evaluate("document.getElementById('report').children.length") == 0
            )  # no stale figures
        _ask(browser, "2025-Q2", ZONE)  # a quarter, and a good period clears the error
        browser.wait_for("document.getElementById('report-span')?.textContent.startsWith('2025-Q2')")
        assert browser.evaluate("document.getElementById('report-error').textContent") == ""
        assert _cells(browser, "report-volumes")["opened"][1] == "3"
    finally:
        browser.close()


def test_choosing_a_quarter(live_api: LiveApi, june: June) -> None:
    browser = _open_reports(live_api, june.finance, "en")
    try:
        browser.wait_for("document.getElementById('report-span')")
        zone = browser.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
        today = datetime.now(ZoneInfo(zone))
        quarter = (today.month - 1) // 3  # the last whole one, 0 meaning last year's fourth
        expected = f"{today.year}-Q{quarter}" if quarter else f"{today.year - 1}-Q4"
        browser.evaluate(
            "(() => { const k = document.getElementById('report-kind'); k.value = 'quarter';"
            " k.dispatchEvent(new Event('change')); })()"
        )
        assert browser.evaluate("document.getElementById('report-period').value") == expected
        browser.evaluate("document.querySelector('#report-form button[type=submit]').click()")
        browser.wait_for(f"document.getElementById('report-span')?.textContent.startsWith('{expected},')")

        browser.evaluate(
            "(() => { const p = document.getElementById('report-period'); p.value = '2025-06';"
            " p.dispatchEvent(new Event('input')); })()"
        )
        assert (
            browser.evaluate("document.getElementById('report-kind').value") == "month"
        )  # follows what is typed
    finally:
        browser.close()


def test_a_report_link_can_be_shared(live_api: LiveApi, june: June) -> None:
    link = f"{live_api.base}/dashboard/#token={june.finance}&lang=en&view=reports/2025-06/Asia%2FShanghai"
    browser = Browser(link)
    try:
        browser.wait_for(
            "document.getElementById('report-span')?.textContent.startsWith('2025-06, Asia/Shanghai')"
        )
        assert _cells(browser, "report-volumes")["opened"][1] == "3"
        assert browser.evaluate("document.getElementById('report-tz').value") == ZONE
        _ask(browser, "2025-Q2", "UTC")
        browser.wait_for("document.getElementById('report-span')?.textContent.startsWith('2025-Q2, UTC')")
        assert browser.evaluate("location.hash") == "#/reports/2025-Q2/UTC"  # what the address bar now shares
    finally:
        browser.close()
