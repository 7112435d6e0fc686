"""The load balancer's active check (roles/nginx/files/tally-upstream-check): its decisions.

The daemon's rounds are fed here as /readyz statuses; no fleet is needed. The drills
web-db-cut (a host is taken out) and primary-blip (no host is) check the same on a fleet.
"""

import importlib.machinery
import importlib.util

import pytest

from loadtests.fleet import ROOT

SCRIPT = ROOT / "ansible" / "roles" / "nginx" / "files" / "tally-upstream-check"


@pytest.fixture(scope="module")
def rotation():
    loader = importlib.machinery.SourceFileLoader("tally_upstream_check", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return lambda: module.Rotation(["web1", "web2", "web3"], fall=3, rise=2)


def _run(rotation, rounds):
    """Feed rounds of (web1, web2, web3) statuses; the set that is out after each."""
    outs = []
    for statuses in rounds:
        rotation.round(dict(zip(["web1", "web2", "web3"], statuses, strict=True)))
        outs.append(set(rotation.out))
    return outs


def test_a_host_that_says_503_while_others_say_200_goes_out_after_fall_rounds_and_back_after_rise(
    rotation,
):
    r = rotation()
    outs = _run(r, [(503, 200, 200)] * 3 + [(200, 200, 200)] * 2)
    assert outs == [set(), set(), {"web1"}, {"web1"}, set()]


def test_after_the_primary_was_away_the_host_that_reconnects_last_stays_in(rotation):
    # Every host says 503 while the primary is away; then they come back one round apart.
    r = rotation()
    outs = _run(r, [(503, 503, 503)] * 5 + [(200, 503, 503), (200, 200, 503), (200, 200, 200)])
    assert outs == [set()] * 8


def test_rounds_when_no_host_was_ready_do_not_count_toward_fall(rotation):
    r = rotation()
    outs = _run(r, [(503, 200, 200), (503, 200, 200), (503, 503, 503), (503, 200, 200)])
    assert outs == [set()] * 4


def test_a_host_that_does_not_answer_is_left_to_nginx(rotation):
    # No answer (0) is a host that is down or restarting: a deploy drains it, nginx's own
    # max_fails handles a dead one. The check must not fight either.
    r = rotation()
    assert _run(r, [(0, 200, 200)] * 5) == [set()] * 5


def test_an_out_host_comes_back_when_no_other_host_is_ready(rotation):
    # Taking every host out would turn the app's 503 with Retry-After into nginx's 502.
    r = rotation()
    outs = _run(r, [(503, 200, 200)] * 3 + [(503, 503, 503)])
    assert outs == [set(), set(), {"web1"}, set()]
    assert r.round({"web1": 503, "web2": 200, "web3": 200}) == []
