"""What a NOC operator and a customer tripped on, walking the dashboard in a real Chromium:
the ticket filter offered "open" twice, a terminal one may not see stayed "Loading…" for ever,
on a phone the search box was squeezed to a few letters, a Chinese page named the role in
English, a one-fix track said "1 fixes", a raised alert could not be acknowledged from its
terminal, a token pasted with its "Bearer" header was refused, and a page whose rows went
away stayed empty."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.browser.cdp import Browser
from tests.browser.support import LiveApi


@contextmanager
def _dashboard(live_api: LiveApi, who: str, view: str, lang: str = "en") -> Iterator[Browser]:
    """A Chromium signed in with ``who``'s token by a link to ``view``."""
    token = live_api.fleet.tokens[who]
    browser = Browser(f"{live_api.base}/dashboard/#token={token}&lang={lang}&view={view}")
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def phone_page(live_api: LiveApi) -> Iterator[Browser]:
    """The customer's dashboard on a 390 px wide phone screen."""
    browser = Browser("about:blank")
    try:
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=390,
            height=844,
            deviceScaleFactor=1,
            mobile=True,
        )
        token = live_api.fleet.tokens["harbour"]
        browser.call("Page.navigate", session=True, url=f"{live_api.base}/dashboard/#token={token}&lang=en")
        browser.wait_for("document.querySelector('#terminal-table tbody tr[data-terminal]')")
        yield browser
    finally:
        browser.close()


@pytest.mark.parametrize(("lang", "text"), [("en", "Open (not yet resolved)"), ("zh", "未完成（修复前）")])
def test_the_ticket_state_filter_offers_open_once(live_api: LiveApi, lang: str, text: str) -> None:
    with _dashboard(live_api, "admin", "tickets", lang) as browser:
        browser.wait_for("document.querySelector('#ticket-table tbody tr[data-ticket]')")
        options = browser.evaluate(
            "[...document.getElementById('ticket-state').options].map(o => [o.value, o.text, o.selected])"
        )
        assert [o for o in options if o[0] == "open"] == [["open", text, True]]
        assert [o[0] for o in options] == [
            "open",
            "approved",
            "dispatched",
            "in_progress",
            "resolved",
            "closed",
            "cancelled",
            "",
        ]


def test_a_terminal_one_may_not_see_says_not_found(live_api: LiveApi) -> None:
    fleet = live_api.fleet
    with _dashboard(live_api, "harbour", f"terminal/{fleet.other_customer}", "en") as browser:
        browser.wait_for("document.getElementById('terminal-missing')?.hidden === false")
        said = browser.evaluate("document.getElementById('terminal-missing').textContent")
        assert said == f"Error: terminal {fleet.other_customer} not found"
        body = "getComputedStyle(document.getElementById('terminal-body')).display"
        assert browser.evaluate(body) == "none"  # no "Loading…" panel, no empty tables
        assert "Loading" not in browser.evaluate("document.getElementById('main').innerText")
        assert fleet.other_customer not in browser.evaluate("document.getElementById('banner').textContent")

        browser.evaluate(f"location.hash = '#/terminal/{fleet.moving}'")  # its own terminal shows as before
        browser.wait_for("document.querySelector('#registry-panel dl')")
        assert browser.evaluate("document.getElementById('terminal-missing').hidden")
        assert browser.evaluate(body) == "grid"


def test_on_a_phone_the_search_box_has_a_row_of_its_own(phone_page: Browser) -> None:
    widths = phone_page.evaluate(
        "[document.getElementById('search').getBoundingClientRect().width,"
        " document.querySelector('#view-terminals .toolbar').getBoundingClientRect().width,"
        " document.documentElement.scrollWidth, window.innerWidth]"
    )
    search, toolbar, page, screen = widths
    assert search >= 0.9 * toolbar, widths  # it was 70 px of 358
    assert page == screen  # and nothing scrolls sideways but the table inside its frame


def test_a_customer_reading_chinese_sees_its_role_in_chinese(live_api: LiveApi) -> None:
    with _dashboard(live_api, "harbour", "reports", "zh") as browser:
        browser.wait_for("document.getElementById('report-refused')")
        who = browser.evaluate("document.getElementById('who').textContent")
        assert who.startswith("Harbour portal · 角色: 客户") and "customer" not in who
        refused = browser.evaluate("document.getElementById('report-refused').textContent")
        assert "当前令牌的角色（客户）无权查看" in refused
        browser.evaluate(
            "[...document.querySelectorAll('#lang button')].find(b => b.textContent === 'English').click()"
        )
        browser.wait_for("document.getElementById('who').textContent.includes('role: customer')")


def test_a_track_of_one_fix_says_one_fix(live_api: LiveApi) -> None:
    fleet = live_api.fleet
    with _dashboard(live_api, "admin", f"terminal/{fleet.power_cut}", "en") as browser:
        browser.wait_for("document.querySelector('#track figcaption')")
        caption = browser.evaluate("document.querySelector('#track figcaption').textContent")
        assert caption.startswith("one fix · Last position: 31.10000, 121.30000"), caption


def test_acknowledge_an_alert_from_the_terminal_it_is_on(live_api: LiveApi) -> None:
    fleet = live_api.fleet
    link = f"{live_api.base}/dashboard/#lang=en&view=terminal/{fleet.antenna_cut}&token="
    [alert] = [
        a
        for a in httpx.get(
            f"{live_api.base}/api/v1/alerts?state=open&terminal_id={fleet.antenna_cut}",
            headers={"Authorization": f"Bearer {fleet.tokens['admin']}"},
            timeout=10,
        ).json()["items"]
        if a["fault"] == "gnss_antenna_cut"
    ]
    button = f"document.querySelector('#terminal-alerts [data-alert=\"{alert['id']}\"] button')"
    technician = Browser(link + fleet.tokens["technician"])
    try:  # a technician may not acknowledge: no button
        technician.wait_for(f"document.querySelector('#terminal-alerts [data-alert=\"{alert['id']}\"]')")
        assert technician.evaluate(f"{button} === null")
    finally:
        technician.close()

    noc = Browser(link + fleet.tokens["admin"])
    try:
        noc.wait_for(button)
        noc.evaluate(f"{button}.click()")
        noc.wait_for("document.getElementById('dialog').open")
        noc.evaluate(
            "(() => { const f = document.querySelector('#dialog form');"
            " f.elements.comment.value = 'installer booked for Friday';"
            " f.querySelector('button[type=submit]').click(); })()"
        )
        noc.wait_for(f"{button} === null")  # redrawn: acknowledged, nothing left to press
        stored = httpx.get(
            f"{live_api.base}/api/v1/alerts/{alert['id']}",
            headers={"Authorization": f"Bearer {fleet.tokens['admin']}"},
            timeout=10,
        ).json()
        assert stored["state"] == "acknowledged" and stored["ack_comment"] == "installer booked for Friday"
    finally:
        noc.close()


def test_a_token_pasted_with_its_header_signs_in(live_api: LiveApi) -> None:
    browser = Browser(f"{live_api.base}/dashboard/#lang=en")
    try:
        browser.wait_for("document.getElementById('signin')")
        token = live_api.fleet.tokens["technician"]
        browser.evaluate(
            f"""(() => {{ const f = document.getElementById('signin');
            f.elements.token.value = '  Authorization: Bearer {token} ';
            f.querySelector('button[type=submit]').click(); }})()"""
        )
        browser.wait_for("document.querySelector('#terminal-table tbody tr[data-terminal]')")
        assert browser.evaluate("sessionStorage.getItem('gpsfleet.token')") == token
        assert "Wang tech" in browser.evaluate("document.getElementById('who').textContent")
    finally:
        browser.close()


def test_a_page_that_emptied_goes_back_to_the_last_page_there_is(live_api: LiveApi) -> None:
    with _dashboard(live_api, "admin", "alerts", "en") as browser:
        browser.wait_for("document.querySelector('#alert-table tbody tr[data-alert]')")
        shown = browser.evaluate("document.querySelectorAll('#alert-table tbody tr[data-alert]').length")
        # the operator was on page 3 when the alerts there cleared: the next poll finds it empty
        browser.evaluate("app.alerts.offset = 200; refresh()")
        rows = "document.querySelectorAll('#alert-table tbody tr[data-alert]').length"
        browser.wait_for(f"app.alerts.offset === 0 && {rows} === {shown}")
        assert f"1–{shown} of {shown}" in browser.evaluate("document.getElementById('pager').textContent")
