"""Verdicts that read the step load directly: the knee, the stage at the predicted capacity,
a target beyond the capacity, an uncalibrated machine, pgbouncer's counted waits, stale reads."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from loadtests import analysis, samplers
from loadtests.forms import Form

MODEL = {
    "saturation_rps": 100.0,
    "capacity_rps": 60.0,
    "target_utilisation": 0.6,
    "bottleneck": "shared cores",
    "latency_p95_ms": 500,
    "offered_rps": 40.0,
    "web_hosts_needed": 2,
    "pooled_server_connections": 10,
    "shared_cores": 2,
    "pool_wait_probability": 0.0001,
}


def plan(**changes):
    return SimpleNamespace(model={**MODEL, **changes})


def stage(label, offered, rps, p95=100.0, failures=0, utilisation=math.nan):
    return analysis.StageResult(
        label,
        10,
        offered,
        0,
        60,
        requests=int(rps * 60),
        failures=failures,
        rps=rps,
        p95_ms=p95,
        utilisation=utilisation,
        cpu_utilisation=math.nan,
        expected_rps=offered,
        peak_server_connections=2,
        pool_wait_ms=0.0,
    )


def verdicts(stages, the_plan=None, ledger=None):
    ledger = ledger or {"acknowledged": 10, "completed": 2, "rereads": 10, "stale_reads": 0}
    found = analysis.verdicts(the_plan or plan(), stages, ledger, [0.2] * 10, set())
    return {v.name: v for v in found}


def step(knee_rps=100.0):
    """A step whose throughput plateaus at `knee_rps`: past it, latency breaks the objective."""
    out = []
    for fraction in (0.25, 0.5, 0.6, 0.8, 0.9, 1.0, 1.1, 1.2):
        offered = 100.0 * fraction
        achieved = min(offered, knee_rps)
        p95 = 120.0 if offered <= knee_rps else 2000.0
        out.append(stage(f"{fraction:g}x", offered, achieved, p95=p95))
    return out


def test_the_knee_is_the_highest_throughput_held_within_the_objective():
    found = verdicts(step(knee_rps=95.0))
    knee = found["saturation throughput"]
    assert knee.passed is True
    # Stage 1.0x offered 100/s and got 95/s past the objective: the knee is stage 0.9x's 90/s.
    assert knee.measured.startswith("90.0 requests/s (0.90x; stage 0.9x,")
    assert "higher still" not in knee.measured


@pytest.mark.parametrize(("knee_rps", "passed"), [(90.0, True), (70.0, False)])
def test_a_measured_knee_far_below_the_prediction_fails(knee_rps, passed):
    stages = [stage("a", 50, 50), stage("b", 80, knee_rps), stage("c", 120, knee_rps, p95=900)]
    knee = verdicts(stages)["saturation throughput"]
    assert knee.passed is passed
    assert "higher still" not in knee.measured


def test_a_step_that_never_saturated_reads_a_lower_bound():
    stages = [stage("a", 50, 50), stage("b", 110, 110)]
    knee = verdicts(stages)["saturation throughput"]
    assert knee.passed is True
    assert "higher still" in knee.measured
    short = verdicts([stage("a", 50, 50)])["saturation throughput"]
    assert short.passed is False  # 0.5x of the prediction, and nothing says it is higher


def test_no_stage_within_the_objective_fails_the_knee():
    assert verdicts([stage("a", 50, 30, p95=3000)])["saturation throughput"].passed is False


def test_the_stage_at_the_predicted_capacity_is_read_directly():
    def at_capacity(**changes):
        values = {"offered": 60.0, "rps": 58.0, "p95": 200.0, "utilisation": 0.62, **changes}
        one = stage("1x", values["offered"], values["rps"], values["p95"])
        one.utilisation = values["utilisation"]
        return verdicts([one])["capacity at the target utilisation"]

    assert at_capacity().passed is True
    assert at_capacity(p95=800.0).passed is False
    assert at_capacity(rps=45.0).passed is False
    # Served in time but at a third of the bottleneck: the model under-predicts the capacity.
    assert at_capacity(utilisation=0.2).passed is False
    assert at_capacity(utilisation=0.9).passed is False
    assert verdicts([stage("x", 30.0, 30.0)])["capacity at the target utilisation"].passed is None


def test_the_extrapolation_is_shown_but_never_judged():
    found = verdicts([stage("1x", 60.0, 30.0, utilisation=0.3)])
    extrapolated = found["capacity, extrapolated"]
    assert extrapolated.passed is None
    assert not extrapolated.judged
    assert "60.0 requests/s (1.00x" in extrapolated.measured


def test_a_target_beyond_the_capacity_is_a_verdict_with_its_reason():
    beyond = verdicts(step(), plan(offered_rps=80.0))
    verdict = beyond["target within the predicted capacity"]
    assert verdict.passed is False
    assert "too little for the target" in verdict.measured
    assert "2 web hosts" in verdict.measured
    assert verdicts(step())["target within the predicted capacity"].passed is True
    # The target stage is still measured: its p95 is a reading, not a foregone failure.
    target = stage("target", 80.0, 80.0, p95=450.0)
    assert verdicts([target], plan(offered_rps=80.0))["p95 at the target load"].passed is True


def test_a_judged_verdict_that_measured_nothing_says_so():
    found = analysis.verdicts(plan(), [stage("x", 30.0, 30.0)], {}, [0.2], {"no stale reads"})
    stale = next(v for v in found if v.name == "no stale reads")
    assert stale.passed is None
    assert stale.word == "NOT MEASURED"


def test_capacity_verdicts_on_another_machine_are_uncalibrated_not_failed():
    reason = "calibrated on another CPU: run make calibrate ENV=local"
    stages = step(knee_rps=40.0)
    for one in stages:
        one.utilisation = 0.95
    found = verdicts(stages, plan(uncalibrated=reason, offered_rps=80.0))
    for name in analysis.CAPACITY_VERDICTS:
        assert found[name].word == "UNCALIBRATED"
        assert reason in found[name].measured
    assert found["ledger"].passed is True


def test_pgbouncer_waits_come_from_its_counted_wait_time():
    samples = [(1000.0 + t, "web1", "pgb_wait_us", 500.0 * (t // 30)) for t in range(60)]
    samples += [(1000.0 + t, "web2", "pgb_wait_us", 7.0) for t in range(60)]
    assert analysis.counter_delta(samples, "pgb_wait_us", 1000, 1060) == 500.0
    assert math.isnan(analysis.counter_delta(samples, "pgb_wait_us", 2000, 2060))
    # The pools allow waits of pool_wait_probability of the transaction time, no more.
    probability = plan().model["pool_wait_probability"]
    waited = stage("a", 10, 10)
    waited.pool_xact_ms = 60_000.0
    waited.pool_wait_ms = 60_000.0 * probability
    assert verdicts([waited])["pgbouncer waits below capacity"].passed is True
    waited.pool_wait_ms *= 1.01
    found = verdicts([waited])["pgbouncer waits below capacity"]
    assert found.passed is False
    assert "in 60.0 s of transactions" in found.measured
    assert verdicts([stage("a", 10, 10)])["pgbouncer waits below capacity"].passed is True


def test_stale_reads_fail_their_verdict():
    stale = {"acknowledged": 10, "completed": 2, "rereads": 10, "stale_reads": 1}
    assert verdicts([stage("a", 10, 10)], ledger=stale)["no stale reads"].passed is False
    assert verdicts([stage("a", 10, 10)])["no stale reads"].passed is True


SAVED = """
<form method="post" action="/s/demo/r/abcdefghijklmnopqrstuvwx/p/1/">
  <input type="hidden" name="csrfmiddlewaretoken" value="tok">
  <input type="radio" name="q1" value="11"><input type="radio" name="q1" value="12" checked>
  <input type="checkbox" name="q2" value="21" checked><input type="checkbox" name="q2" value="22">
  <input type="checkbox" name="q2" value="23" checked>
  <textarea name="q3">
Fine &amp; well.</textarea>
</form>
"""


def test_a_reread_page_shows_what_was_saved_or_names_the_stale_questions():
    form = Form(SAVED)
    assert form.saved == {"q1": ["12"], "q2": ["21", "23"], "q3": ["Fine & well."]}
    assert form.stale({"q1": "12", "q2": ["23", "21"], "q3": "Fine & well."}) == []
    assert form.stale({"q1": "11", "q2": ["21"], "q3": "Fine & well."}) == ["q1", "q2"]
    assert Form(SAVED.replace(" checked", "")).stale({"q1": "12"}) == ["q1", "q3"]


def test_show_stats_is_read_as_running_totals_of_client_waits_and_transactions():
    lines = [
        "database|total_xact_count|total_xact_time|total_wait_time",
        "pgbouncer|3|9|0",
        "tally|120|90000|1500",
        "tally_db2|80|30000|250",
    ]
    assert samplers.parse_stats(lines) == {"pgb_wait_us": 1750.0, "pgb_xact_us": 120000.0}
