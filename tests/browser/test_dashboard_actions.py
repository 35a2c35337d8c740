"""Using the dashboard in a real Chromium (driven over the DevTools pipe) against the real API:
search and sort the terminal table, acknowledge an alert with a comment, move a ticket, open
one by hand, claim an unknown terminal, switch language; a revoked token returns to sign-in
at the next poll.  Each action is checked where it lands: in the API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.auth import list_tokens, revoke_token
from store.db import open_database
from tests.browser.cdp import Browser
from tests.browser.support import UNKNOWN_DEVICE, LiveApi


@pytest.fixture
def admin_page(live_api: LiveApi) -> Iterator[Browser]:
    browser = Browser(f"{live_api.base}/dashboard/#token={live_api.fleet.tokens['admin']}&lang=en")
    try:
        browser.wait_for("document.querySelectorAll('#terminal-table tbody tr[data-terminal]').length === 5")
        yield browser
    finally:
        browser.close()


def _api(live_api: LiveApi, path: str) -> Any:
    headers = {"Authorization": f"Bearer {live_api.fleet.tokens['admin']}"}
    answer = httpx.get(f"{live_api.base}{path}", headers=headers, timeout=10)
    answer.raise_for_status()
    return answer.json()


def _rows(browser: Browser) -> list[str]:
    rows: list[str] = browser.evaluate(
        "[...document.querySelectorAll('#terminal-table tbody tr[data-terminal]')].map(r => r.dataset.terminal)"
    )
    return rows


def _search(browser: Browser, text: str) -> None:
    browser.evaluate(
        f"(() => {{ const s = document.getElementById('search'); s.value = {json.dumps(text)};"
        " s.dispatchEvent(new Event('input')); })()"
    )


def _submit_dialog(browser: Browser, fields: dict[str, str]) -> None:
    """Fill the open dialog's fields by name and press its Save button."""
    browser.wait_for("document.getElementById('dialog').open")
    browser.evaluate(
        f"""(() => {{
          const form = document.querySelector('#dialog form');
          for (const [name, value] of Object.entries({json.dumps(fields)})) form.elements[name].value = value;
          form.querySelector('button[type=submit]').click();
        }})()"""
    )
    browser.wait_for("!document.getElementById('dialog').open")


def test_search_filter_and_sort_the_terminal_table(live_api: LiveApi, admin_page: Browser) -> None:
    fleet = live_api.fleet
    _search(admin_page, "沪B")
    admin_page.wait_for("document.querySelectorAll('#terminal-table tbody tr[data-terminal]').length === 1")
    assert _rows(admin_page) == [fleet.power_cut]
    _search(admin_page, "")
    admin_page.wait_for("document.querySelectorAll('#terminal-table tbody tr[data-terminal]').length === 5")

    admin_page.evaluate("document.getElementById('count-faulty').click()")  # a count is a filter
    admin_page.wait_for("document.querySelectorAll('#terminal-table tbody tr[data-terminal]').length === 2")
    assert sorted(_rows(admin_page)) == sorted([fleet.power_cut, fleet.antenna_cut])
    admin_page.evaluate("document.getElementById('count-faulty').click()")
    admin_page.wait_for("document.querySelectorAll('#terminal-table tbody tr[data-terminal]').length === 5")

    power = "[...document.querySelectorAll('#terminal-table th')].find(th => th.textContent === 'Power')"
    admin_page.evaluate(f"{power}.click()")
    admin_page.wait_for(f"{power}.classList.contains('sorted-asc')")
    admin_page.wait_for(
        f"document.querySelector('#terminal-table tbody tr').dataset.terminal === '{fleet.power_cut}'"
    )
    admin_page.evaluate(f"{power}.click()")
    admin_page.wait_for(
        f"document.querySelector('#terminal-table tbody tr').dataset.terminal === '{fleet.other_customer}'"
    )


def test_acknowledge_an_alert_with_a_comment(live_api: LiveApi, admin_page: Browser) -> None:
    fleet = live_api.fleet
    admin_page.evaluate("location.hash = '#/alerts'")
    admin_page.wait_for("document.querySelector('#alert-table tbody tr[data-alert] button')")
    alert = next(
        a for a in _api(live_api, "/api/v1/alerts?state=open")["items"] if a["terminal_id"] == fleet.power_cut
    )
    admin_page.evaluate(f"document.querySelector('tr[data-alert=\"{alert['id']}\"] button').click()")
    _submit_dialog(admin_page, {"comment": "called the driver: battery swap"})
    acknowledged = _api(live_api, f"/api/v1/alerts/{alert['id']}")
    assert (
        acknowledged["state"] == "acknowledged"
        and acknowledged["ack_comment"] == "called the driver: battery swap"
    )
    assert acknowledged["acknowledged_by"] == "NOC wall"
    admin_page.wait_for(
        f"document.querySelector('tr[data-alert=\"{alert['id']}\"]').textContent.includes('called the driver')"
    )


def test_move_a_ticket_and_open_one_by_hand(live_api: LiveApi, admin_page: Browser) -> None:
    fleet = live_api.fleet
    admin_page.evaluate("location.hash = '#/tickets'")
    admin_page.wait_for("document.querySelector('#ticket-table button[data-to=approved]')")
    urgent = next(t for t in _api(live_api, "/api/v1/tickets")["items"] if t["number"] == fleet.urgent_ticket)
    admin_page.evaluate(
        f"document.querySelector('tr[data-ticket=\"{urgent['id']}\"] button[data-to=approved]').click()"
    )
    _submit_dialog(admin_page, {"comment": "approved on the phone"})
    assert _api(live_api, f"/api/v1/tickets/{urgent['id']}")["state"] == "approved"
    admin_page.wait_for(
        f"document.querySelector('tr[data-ticket=\"{urgent['id']}\"] button[data-to=dispatched]') !== null"
    )

    admin_page.evaluate("document.getElementById('open-ticket').click()")
    _submit_dialog(
        admin_page,
        {
            "terminal_id": fleet.antenna_cut,
            "fault": "",
            "priority": "urgent",
            "symptoms": "no position since Monday",
        },
    )
    opened = _api(live_api, f"/api/v1/tickets?terminal_id={fleet.antenna_cut}&fault=reported")["items"]
    assert len(opened) == 1 and opened[0]["priority"] == "urgent" and opened[0]["source"] == "manual"
    assert (
        opened[0]["symptoms"] == "no position since Monday"
        and opened[0]["customer_name"] == "Harbour Freight"
    )

    # the API's refusal is shown in the dialog, which stays open
    admin_page.evaluate("document.getElementById('open-ticket').click()")
    admin_page.wait_for("document.getElementById('dialog').open")
    admin_page.evaluate(
        f"""(() => {{ const f = document.querySelector('#dialog form');
        f.elements.terminal_id.value = '{fleet.antenna_cut}'; f.querySelector('button[type=submit]').click(); }})()"""
    )
    admin_page.wait_for("document.querySelector('#dialog .error').textContent.includes('open')")
    assert admin_page.evaluate("document.getElementById('dialog').open")
    admin_page.evaluate("document.getElementById('dialog').close()")


def test_find_the_tickets_of_a_vehicle_by_its_plate(live_api: LiveApi, admin_page: Browser) -> None:
    admin_page.evaluate("location.hash = '#/tickets'")
    rows = "[...document.querySelectorAll('#ticket-table tbody tr[data-ticket]')]"
    admin_page.wait_for(f"{rows}.length > 1")
    admin_page.evaluate(
        "(() => { const p = document.getElementById('ticket-plate'); p.value = '川d 4';"
        " p.dispatchEvent(new Event('input')); })()"
    )
    wanted = {str(t["id"]) for t in _api(live_api, "/api/v1/tickets?state=open&plate=川D4")["items"]}
    assert wanted  # the urgent ticket of Mountain Buses' 川D40004
    admin_page.wait_for(f"{rows}.length === {len(wanted)}")
    shown = admin_page.evaluate(f"{rows}.map(r => [r.dataset.ticket, r.textContent])")
    assert {ticket for ticket, _ in shown} == wanted and all("川D40004" in text for _, text in shown)


def test_open_a_ticket_for_the_vehicle_a_caller_names(live_api: LiveApi, admin_page: Browser) -> None:
    fleet = live_api.fleet
    admin_page.evaluate("location.hash = '#/tickets'")
    admin_page.wait_for("document.getElementById('open-ticket')")
    admin_page.evaluate("document.getElementById('open-ticket').click()")
    _submit_dialog(
        admin_page, {"terminal_id": "", "plate": "沪b 20002", "fault": "weak_gsm", "symptoms": "calls drop"}
    )
    [opened] = _api(live_api, f"/api/v1/tickets?terminal_id={fleet.power_cut}&fault=weak_gsm")["items"]
    assert opened["vehicle_plate"] == "沪B20002" and opened["symptoms"] == "calls drop"


def test_claim_an_unknown_terminal(live_api: LiveApi, admin_page: Browser) -> None:
    admin_page.evaluate("location.hash = '#/quarantine'")
    admin_page.wait_for(f"document.querySelector('tr[data-quarantine=\"{UNKNOWN_DEVICE}\"] button')")
    admin_page.evaluate(f"document.querySelector('tr[data-quarantine=\"{UNKNOWN_DEVICE}\"] button').click()")
    _submit_dialog(admin_page, {"note": "a demo unit from the trade fair"})
    claimed = next(
        q for q in _api(live_api, "/api/v1/gateway/quarantine") if q["device_id"] == UNKNOWN_DEVICE
    )
    assert claimed["status"] == "claimed" and claimed["claimed_by"] == "NOC wall"
    assert claimed["note"] == "a demo unit from the trade fair"


def test_language_switch_is_remembered(live_api: LiveApi, admin_page: Browser) -> None:
    admin_page.evaluate(
        "[...document.querySelectorAll('#lang button')].find(b => b.textContent === '中文').click()"
    )
    admin_page.wait_for("document.getElementById('nav-terminals').textContent === '终端'")
    admin_page.wait_for("document.getElementById('count-online')?.textContent.includes('在线')")
    assert admin_page.evaluate("localStorage.getItem('gpsfleet.lang')") == "zh"
    admin_page.evaluate("window.beforeReload = true; location.reload()")
    admin_page.wait_for(
        "!window.beforeReload && document.getElementById('count-online')"
        " && document.documentElement.lang === 'zh-CN'"
    )
    admin_page.evaluate(
        "[...document.querySelectorAll('#lang button')].find(b => b.textContent === 'English').click()"
    )
    admin_page.wait_for("document.getElementById('nav-terminals').textContent === 'Terminals'")


def test_revoked_token_returns_to_sign_in(live_api: LiveApi) -> None:
    database = open_database(live_api.database_url)
    with_token = Browser(f"{live_api.base}/dashboard/#token={live_api.fleet.tokens['technician']}&lang=en")
    try:
        with_token.wait_for("document.querySelector('#terminal-table tbody tr[data-terminal]')")
        assert "#token" not in with_token.evaluate("location.href")  # the token left the address bar
        technician = next(t for t in list_tokens(database.engine) if t.name == "Wang tech")
        revoke_token(database.engine, technician.id)
        with_token.wait_for("document.getElementById('signin') !== null")  # at the next poll
        assert "refused" in with_token.evaluate("document.getElementById('banner').textContent")
        assert with_token.evaluate("sessionStorage.getItem('gpsfleet.token')") is None
    finally:
        with_token.close()
        database.dispose()
