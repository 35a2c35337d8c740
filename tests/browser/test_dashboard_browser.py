"""The dashboard in a real headless Chromium against the real API (uvicorn on a free port,
SQLite, a fleet built through the real services): what the page renders after it signed in
from the ``#token=`` link, in English and in Chinese, and for a customer."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

from tests.browser.chromium import CHROMIUM, CHROMIUM_FLAGS
from tests.browser.support import UNKNOWN_DEVICE, LiveApi


def chromium(url: str, *extra: str) -> str:
    """Load ``url``, let its scripts run for 10 s of virtual time, return the rendered DOM."""
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="gpsfleet-chromium-")
    try:
        result = subprocess.run(
            [
                CHROMIUM,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                *extra,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:  # a helper process may still be writing to the profile as the browser exits
        shutil.rmtree(profile, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def text_of(dom: str) -> str:
    """The DOM without tags, whitespace collapsed: what a reader sees."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_noc_operator_sees_terminals_counts_and_tickets(live_api: LiveApi) -> None:
    fleet = live_api.fleet
    dom = chromium(f"{live_api.base}/dashboard/#token={fleet.tokens['admin']}&lang=en", "--dump-dom")
    seen = text_of(dom)
    assert 'id="terminal-table"' in dom, seen[:2000]
    for device in (fleet.moving, fleet.power_cut, fleet.antenna_cut, fleet.other_customer, fleet.in_stock):
        assert f'data-terminal="{device}"' in dom
    # the health counts: 5 terminals, 4 online, 1 never seen, 2 faulty
    assert re.search(r'id="count-all".*?<span class="n">5</span>', dom)
    assert re.search(r'id="count-online".*?<span class="n">4</span>', dom)
    assert re.search(r'id="count-never_seen".*?<span class="n">1</span>', dom)
    assert re.search(r'id="count-faulty".*?<span class="n">2</span>', dom)
    assert "Power cut" in seen and "GNSS antenna cut" in seen and "Harbour Freight" in seen
    assert "Online" in seen and "Last seen" in seen and "Quarantine" in seen and "Sign out" in seen


def test_tickets_alerts_quarantine_and_detail_views(live_api: LiveApi) -> None:
    fleet = live_api.fleet
    token = fleet.tokens["admin"]
    page = _view(live_api, token, "tickets")
    seen = text_of(page)
    assert fleet.overdue_ticket in seen and fleet.urgent_ticket in seen
    overdue_row = re.search(
        rf'<tr data-ticket="\d+"[^>]*>(?:(?!</tr>).)*{fleet.overdue_ticket}.*?</tr>', page, re.S
    )
    assert (
        overdue_row
        and 'class="overdue"' in overdue_row.group(0)
        and "overdue" in text_of(overdue_row.group(0))
    )
    assert "in warranty" in seen  # warranty coverage on the ticket
    assert "Open a ticket" in seen and 'data-to="approved"' in page  # admin may approve

    alerts = text_of(_view(live_api, token, "alerts"))
    assert "Power cut" in alerts and "GNSS antenna cut" in alerts and "Acknowledge" in alerts
    assert "沪B20002" in alerts and "Harbour Freight" in alerts  # the vehicle and customer of each alert

    quarantine = text_of(_view(live_api, token, "quarantine"))
    assert UNKNOWN_DEVICE in quarantine and "10.1.2.3:40112" in quarantine and "Claim" in quarantine

    detail = _view(live_api, token, f"terminal/{fleet.moving}")
    assert 'id="track-svg"' in detail and "<polyline" in detail
    points = re.search(r'<polyline points="([^"]+)"', detail)
    assert points and len(points.group(1).split()) == 20
    seen = text_of(detail)
    assert "沪A12345" in seen and "Connectivity" in seen and "Main power" in seen and "in warranty" in seen


def _view(live_api: LiveApi, token: str, view: str) -> str:
    """The DOM of one view, signed in by a link that names it (``view=`` in the fragment)."""
    return chromium(f"{live_api.base}/dashboard/#token={token}&lang=en&view={view}", "--dump-dom")


def test_staff_role_sees_only_its_actions(live_api: LiveApi) -> None:
    token = live_api.fleet.tokens["technician"]
    tickets = _view(live_api, token, "tickets")
    assert live_api.fleet.urgent_ticket in tickets and "Quarantine" in text_of(tickets)
    assert "data-to=" not in tickets and "Open a ticket" not in text_of(tickets)  # approval is the manager's
    alerts = text_of(_view(live_api, token, "alerts"))
    assert "Power cut" in alerts and "Acknowledge" not in alerts.replace("Acknowledged", "")


def test_chinese_labels(live_api: LiveApi) -> None:
    fleet = live_api.fleet
    dom = chromium(f"{live_api.base}/dashboard/#token={fleet.tokens['admin']}&lang=zh", "--dump-dom")
    seen = text_of(dom)
    assert '<html lang="zh-CN"' in dom
    for label in (
        "终端总数",
        "在线",
        "从未上线",
        "故障",
        "最后通信",
        "主电源断电",
        "GPS 天线断开",
        "维修工单",
        "退出",
    ):
        assert label in seen, label
    assert "Last seen" not in seen and "Sign out" not in seen


def test_customer_sees_only_its_own(live_api: LiveApi) -> None:
    fleet = live_api.fleet
    dom = chromium(f"{live_api.base}/dashboard/#token={fleet.tokens['harbour']}&lang=en", "--dump-dom")
    for device in (fleet.moving, fleet.power_cut, fleet.antenna_cut):
        assert f'data-terminal="{device}"' in dom
    assert fleet.other_customer not in dom and "Mountain Buses" not in dom
    seen = text_of(dom)
    assert re.search(r'id="count-all".*?<span class="n">3</span>', dom)
    assert "Quarantine" not in seen  # staff-only view hidden
    tickets = _view(live_api, fleet.tokens["harbour"], "tickets")
    assert fleet.overdue_ticket in tickets and fleet.urgent_ticket not in tickets
    table = tickets.split('id="ticket-table"')[1].split("</table>")[0]
    assert "Open a ticket" not in text_of(tickets) and "<button" not in table  # no transitions offered


def test_bad_token_goes_back_to_sign_in(live_api: LiveApi) -> None:
    dom = chromium(f"{live_api.base}/dashboard/#token=gpf_not-a-token&lang=en", "--dump-dom")
    assert 'id="signin"' in dom and "refused" in text_of(dom)
