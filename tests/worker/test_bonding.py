"""worker.bonding: the coordinator's bond rules from /v1/info, the prices the target follows, the target, and the
plan (how much to bond now): never more than the balance, never a bond below min_bond, steps of at least min_bond,
nothing past the target."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.bonding import HEADROOM, PRICE_WINDOW_MS, Plan, Prices, Rules, plan, target

RULES = Rules(min_bond=100, bond_per_price=20)  # the reference coordinator's (PROTOCOL.md 12.6)
HOUR = 3_600_000


# ---- Rules.from_info ---------------------------------------------------------------------------------------------


def test_rules_from_info() -> None:
    info = {"protocol": 1, "lease_timeout_ms": 60_000, "min_bond": 100, "bond_per_price": 20}
    assert Rules.from_info(info) == RULES


@pytest.mark.parametrize("changes", [
    {"min_bond": None}, {"bond_per_price": None},  # an older coordinator: auto-bonding stays idle
    {"min_bond": 0}, {"bond_per_price": -1}, {"min_bond": True}, {"min_bond": "100"}, {"bond_per_price": 20.0},
    {"min_bond": 2**53},
])
def test_rules_absent_or_nonsense_are_none(changes: dict[str, Any]) -> None:
    info = {k: v for k, v in {"min_bond": 100, "bond_per_price": 20, **changes}.items() if v is not None}
    assert Rules.from_info(info) is None


# ---- Prices ------------------------------------------------------------------------------------------------------


def test_prices_keep_the_highest_of_the_last_day() -> None:
    p = Prices()
    assert p.highest(0) == 0
    assert p.note(10 * HOUR, 10) is True  # the highest rose: 0 -> 10
    assert p.note(10 * HOUR + 5, 7) is False
    assert p.note(11 * HOUR, 10) is False
    assert p.note(12 * HOUR, 30) is True
    assert p.highest(12 * HOUR + 1) == 30
    assert p.highest(12 * HOUR + PRICE_WINDOW_MS) == 30  # a day later, the hour of the 30 is still in the window
    assert p.highest(13 * HOUR + PRICE_WINDOW_MS) == 0  # and then it is forgotten, with every older hour
    assert p.hours == {}


def test_prices_hold_one_number_per_hour() -> None:
    p = Prices()
    for minute in range(0, 48 * 60, 7):
        p.note(minute * 60_000, 1 + minute % 13)
    assert len(p.hours) <= 48
    p.highest(48 * HOUR)
    assert len(p.hours) <= 25


# ---- target --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_bond", "price", "goal"), [
    (1000, 0, 100),  # no price seen yet: min_bond, for the shorter road to trust
    (1000, 1, 100),  # 3 x 20 x 1 = 60 is below min_bond
    (1000, 10, 600),  # 3 x 20 x 10: room for about 60 single results at price 10 awaiting their audit
    (1000, 16, 960),
    (1000, 25, 1000),
    (1000, 500, 1000),  # capped by the owner's max_bond
    (250, 10, 250),
    (100, 10, 100),
    (99, 10, 0),  # below min_bond: no auto-bond at all
    (0, 10, 0),
])
def test_target(max_bond: int, price: int, goal: int) -> None:
    assert target(RULES, max_bond, price) == goal
    assert HEADROOM == 3


# ---- plan --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("bonded", "balance", "expected"), [
    (0, 0, Plan(600, 0, "waiting for 100 spendable credits to bond")),
    (0, 99, Plan(600, 0, "waiting for 100 spendable credits to bond")),  # never a first bond below min_bond
    (0, 100, Plan(600, 100, "bonding 100 credits")),
    (0, 150, Plan(600, 150, "bonding 150 credits")),
    (0, 5000, Plan(600, 600, "bonding 600 credits")),  # never past the target
    (150, 30, Plan(600, 0, "waiting for 100 spendable credits to bond")),  # steps of at least min_bond...
    (550, 60, Plan(600, 50, "bonding 50 credits")),  # ...or the last one, to the target
    (550, 30, Plan(600, 0, "waiting for 50 spendable credits to bond")),
    (600, 1000, Plan(600, 0, "at its target")),
    (1200, 1000, Plan(600, 0, "at its target")),  # bonded by hand beyond it: left alone (never unbonds)
])
def test_plan_at_price_10(bonded: int, balance: int, expected: Plan) -> None:
    assert plan(RULES, max_bond=1000, price=10, bonded=bonded, balance=balance) == expected


def test_plan_below_min_bond_says_why() -> None:
    assert plan(RULES, max_bond=50, price=10, bonded=0, balance=1000) == Plan(
        0, 0, "not bonding: max_bond 50 is below the coordinator's min_bond 100")


@given(min_bond=st.integers(1, 10_000), per_price=st.integers(1, 100), max_bond=st.integers(0, 100_000),
       price=st.integers(0, 10_000), bonded=st.integers(0, 200_000), balance=st.integers(0, 200_000))
def test_plan_invariants(min_bond: int, per_price: int, max_bond: int, price: int, bonded: int, balance: int) -> None:
    rules = Rules(min_bond, per_price)
    p = plan(rules, max_bond=max_bond, price=price, bonded=bonded, balance=balance)
    assert p.target == target(rules, max_bond, price)
    assert p.target == 0 or rules.min_bond <= p.target <= max_bond
    assert 0 <= p.amount <= balance  # never more than the spendable balance
    assert p.amount == 0 or bonded + p.amount <= p.target  # never past the target
    assert p.amount == 0 or bonded + p.amount >= rules.min_bond  # never a bond below min_bond
    assert p.amount == 0 or p.amount >= rules.min_bond or bonded + p.amount == p.target  # few, large steps
    if bonded < p.target and balance >= min(p.target - bonded, rules.min_bond):
        assert p.amount > 0  # and it does bond when it can
