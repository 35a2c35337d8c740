"""Scenario files: strict validation with line numbers, the shipped scenarios, deterministic fleets."""

from __future__ import annotations

import pytest

from simulators.identities import luhn_valid, vin_check_digit
from simulators.scenario import SHIPPED, ScenarioError, expand, load_scenario, parse_scenario

BASE = """\
[scenario]
name = "t"
seed = 4

[timing]
interval_s = 5

[[routes]]
name = "town"

[[fleet]]
name = "vans"
protocol = "jt808"
count = 3
route = "town"

[[fleet]]
name = "cars"
protocol = "gt06"
count = 2
"""


def error_of(text: str) -> str:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="s.toml")
    return str(caught.value)


def test_a_valid_scenario_expands_into_one_plan_per_terminal() -> None:
    scenario = parse_scenario(BASE)
    plans = expand(scenario)
    assert [p.group.name for p in plans] == ["vans"] * 3 + ["cars"] * 2
    assert plans[0].group.timing.interval_s == 5
    assert expand(parse_scenario(BASE)) == plans  # the same fleet every time


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("count = 2\n", 'count = 2\ncolour = "red"\n'), "s.toml:21: fleet[1].colour: unknown key 'colour'"),
        (("interval_s = 5", "interval_s = -5"), "s.toml:6: timing.interval_s: must be >= 1, got -5"),
        (('protocol = "gt06"', 'protocol = "gt07"'), "s.toml:19: fleet[1].protocol: must be one of"),
        (('route = "town"', 'route = "city"'), "s.toml:15: fleet[0].route: no route named 'city'"),
        (("count = 3", 'count = "three"'), "s.toml:14: fleet[0].count: must be int, not str"),
        (("[timing]", "[timming]"), "s.toml:5: timming: unknown key 'timming'"),
        (
            ('name = "cars"\nprotocol = "gt06"', 'name = "cars"\nprotocol = "gt06"\ntransport = "udp"'),
            "s.toml:20: fleet[1].transport: gt06 terminals do not use udp",
        ),
    ],
)
def test_bad_keys_and_values_are_refused_with_their_line(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in BASE
    assert error_of(BASE.replace(old, new, 1)).startswith(expected)


def test_faults_are_checked_against_their_group() -> None:
    text = BASE + '\n[[faults]]\nfleet = "vans"\nterminals = [3]\nkind = "no_fix"\nat_s = 1\n'
    assert error_of(text).startswith("s.toml:24: faults[0].terminals: index 3 is outside group 'vans' (0-2)")
    text = BASE + '\n[[faults]]\nfleet = "vans"\nkind = "meltdown"\nat_s = 1\n'
    assert error_of(text).startswith("s.toml:24: faults[0].kind: must be one of")
    text = BASE + '\n[[faults]]\nfleet = "vans"\nkind = "no_fix"\n'
    assert "needs at_s (a time) or probability" in error_of(text)
    assert error_of("[scenario\nname=1").startswith("s.toml: not valid TOML")
    assert "missing required key 'name'" in error_of(BASE.replace('name = "t"\n', ""))


def test_faults_reach_only_the_terminals_they_name() -> None:
    text = BASE + '\n[[faults]]\nfleet = "vans"\nterminals = [1]\nkind = "power_cut"\nat_s = 30\n'
    plans = expand(parse_scenario(text))
    assert [len(p.faults) for p in plans] == [0, 1, 0, 0, 0]
    assert plans[1].faults[0].spec.at_s == 30


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_load_with_valid_identities(name: str) -> None:
    scenario = load_scenario(name)
    plans = expand(scenario)
    assert len(plans) == scenario.terminal_count > 0
    ids = [p.terminal_id for p in plans]
    assert len(set(ids)) == len(ids)
    for plan in plans[:200]:
        if plan.group.protocol == "jt808":
            assert len(plan.terminal_id) == 12 and plan.terminal_id.isdigit()
        else:
            assert len(plan.terminal_id) == 15 and luhn_valid(plan.terminal_id)
        assert luhn_valid(plan.iccid) and luhn_valid(plan.spare_iccid) and plan.iccid != plan.spare_iccid
        assert vin_check_digit(plan.vin) == plan.vin[8]


def test_the_drill_injects_every_device_fault_and_keeps_healthy_terminals() -> None:
    scenario = load_scenario("fault-drill")
    plans = expand(scenario)
    kinds = {entry.spec.kind.value for plan in plans for entry in plan.faults}
    assert {
        "gnss_antenna_cut",
        "no_fix",
        "frozen_fix",
        "power_cut",
        "low_battery",
        "weak_signal",
        "sim_swap",
        "silent",
        "clock_drift",
        "bad_checksum",
    } <= kinds
    assert sum(1 for plan in plans if not plan.faults) >= 5
    assert {plan.group.warranty for plan in plans if plan.faults} == {"active", "expired"}
