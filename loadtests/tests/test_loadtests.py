"""The load tests' own arithmetic and parsing, without a fleet: the plan's stages, the form a
taker fills in, per-stage measurements, verdicts, calibration output and the samplers' parsers.
(The whole path against a real fleet runs in ansible/tests, the light load test.)"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from dataclasses import replace
from types import SimpleNamespace

import pytest
import yaml

from capacity import calibration, model
from loadtests import __main__ as cli
from loadtests import analysis, bench, drills, ledger, plan, report, samplers
from loadtests.__main__ import write_calibration
from loadtests.fleet import ROOT, Fleet, topology
from loadtests.forms import Form

PAGE = """
<form method="get" action="/search"><input name="q"></form>
<form method="post" action="/s/demo/r/abcdefghijklmnopqrstuvwx/p/1/">
  <input type="hidden" name="csrfmiddlewaretoken" value="tok">
  <input type="hidden" name="submission_id">
  <input type="radio" name="q1" value="11"><input type="radio" name="q1" value="12">
  <input type="checkbox" name="q2" value="21"><input type="checkbox" name="q2" value="22">
  <input type="checkbox" name="q2" value="23">
  <textarea name="q3"></textarea>
  <input type="submit" value="Next">
</form>
<form method="post" action="/other"><input type="hidden" name="x" value="y"></form>
"""


def values():
    return plan.report_model(model.evaluate(model.load("local")))


def predicted():
    return model.evaluate(model.load("local")).predictions()


def test_a_form_is_read_as_a_browser_would_send_it():
    form = Form(PAGE)
    assert form.action == "/s/demo/r/abcdefghijklmnopqrstuvwx/p/1/"
    assert form.hidden == {"csrfmiddlewaretoken": "tok", "submission_id": ""}
    assert form.fields == {
        "csrfmiddlewaretoken": "tok",
        "submission_id": "",
        "q1": "11",
        "q2": "21",
        "q3": "Answered end to end.",
    }
    rng = random.Random(7)
    for _ in range(50):
        answers = form.answers(rng)
        assert answers["q1"] in ("11", "12")
        assert answers["q2"]
        assert set(answers["q2"]) <= {"21", "22", "23"}
        assert answers["q3"]
        assert "x" not in answers  # only the first post form


TRICKY = """
<FORM METHOD=POST action='/s/x/r/t/p/2/?a=1&amp;b=2'>
  <input type=hidden name=csrfmiddlewaretoken value="a>b&quot;c">
  <INPUT TYPE="Radio" NAME="q1" value='1' CHECKED><input type="radio" name="q1" value="">
  <input name="plain" value="">
  <textarea name="q2" rows="3">
<input type="hidden" name="not-a-field" value="x"> &lt;b&gt; &amp; more</textarea>
  <input type="checkbox" name="q3" value="9" checked="checked">
</form>
"""


def test_a_form_is_read_from_any_way_of_writing_its_tags():
    form = Form(TRICKY)
    assert form.action == "/s/x/r/t/p/2/?a=1&b=2"
    assert form.hidden == {"csrfmiddlewaretoken": 'a>b"c', "plain": ""}
    assert form.radios == {"q1": ["1", ""]}
    assert form.checkboxes == {"q3": ["9"]}
    assert form.texts == ["q2"]
    assert form.saved == {
        "q1": ["1"],
        "q2": ['<input type="hidden" name="not-a-field" value="x"> <b> & more'],
        "q3": ["9"],
    }


def test_step_stages_climb_past_the_predicted_capacity_and_around_the_knee():
    p = predicted()
    stages = plan.step_stages(p, p.think_time_s, 60)
    rates = [s.offered_rps for s in stages]
    assert rates == sorted(rates)
    by_capacity = [s.offered_rps for s in stages if s.label.endswith("x") and "knee" not in s.label]
    assert max(by_capacity) <= 1.2 * p.capacity_rps * 1.01
    assert max(by_capacity) >= 1.15 * p.capacity_rps  # a little past it
    knee = [s.offered_rps for s in stages if s.label.startswith("knee")]
    assert min(knee) <= p.saturation_rps <= max(knee) * 1.01  # the run crosses the knee
    assert any(s.label == "target" for s in stages) == (p.offered_rps < p.capacity_rps)
    for stage in stages:  # the model's closed model: users = rate / (rate of one taker)
        assert stage.users == max(1, round(stage.offered_rps / p.offered_rps_of(1, p.think_time_s)))


def test_the_target_stage_offers_the_models_target_rate():
    p = predicted()
    target = plan.soak_stages(p, p.think_time_s, 600)[0]
    assert target.users == pytest.approx(p.concurrent_takers, abs=1)
    assert target.offered_rps == pytest.approx(p.offered_rps, rel=0.01)
    # At the model's own think time and takers, the plan offers the model's rate exactly.
    assert p.offered_rps_of(p.concurrent_takers, p.think_time_s) == pytest.approx(p.offered_rps)
    assert p.cycle_s(p.think_time_s) == pytest.approx(p.survey_cycle_s)
    # Fewer users with a shorter think time send the same rate.
    fast = plan.calibration_stages(p, 0.3, 60, 3)[1]
    assert fast.users < target.users
    assert fast.offered_rps == pytest.approx(p.offered_rps, rel=0.1)


def fake_plan(**model_values):
    v = {**values(), **model_values}
    stage = plan.Stage("s", users=10, seconds=100, offered_rps=10.0)
    return plan.Plan("step", "local", "https://127.0.0.1", None, 1.0, [stage], model=v), stage


def synthetic(rate, seconds, response_ms, server_ms, fail_every=0, t0=1000.0):
    names = ["page GET", "page POST", "landing GET"]
    count = int(rate * seconds)
    return [
        analysis.Request(
            t0 + i / rate,
            names[i % 3],
            response_ms,
            server_ms,
            not (fail_every and i % fail_every == 0),
        )
        for i in range(count)
    ]


def test_a_stage_is_measured_from_its_requests_and_samples():
    the_plan, stage = fake_plan(web_hosts=2, web_worker_slots=3, shared_cores=2)
    requests = synthetic(rate=50, seconds=100, response_ms=40, server_ms=30)
    samples = [(1000.0 + t, "cpu", host, 0.5) for t in range(100) for host in ("web1", "db1")]
    samples += [(1000.0 + t, "db1", "pg_connections", 3 + t % 2) for t in range(100)]
    samples += [(1000.0 + t, "web1", "pgb_cl_waiting", 0) for t in range(100)]
    result = analysis.measure_stage(stage, 1000, 1100, requests, samples, the_plan)
    assert result.requests == 5000
    assert result.rps == pytest.approx(50)
    assert result.p95_ms == 40
    # 50/s x 30 ms = 1.5 workers busy of 6.
    assert result.utilisation == pytest.approx(0.25)
    assert result.fleet_cpu_cores == pytest.approx(1.0)
    assert result.cpu_utilisation == pytest.approx(0.5)
    assert result.cpu_ms_per_request == pytest.approx(20)
    assert result.peak_server_connections == 4
    assert result.peak_client_waiting == 0
    # A third of the requests is a page GET, followed by 1 s of thinking: 10 users send
    # 10 / (1/3 s + 40 ms) requests/s.
    assert result.expected_rps == pytest.approx(10 / (1 / 3 + 0.04), rel=0.01)
    # Shared cores at 50% are the bottleneck: 50/s x 0.6 / 0.5 = 60/s at the target.
    capacity, basis = analysis.measured_capacity([result], 0.6)
    assert basis is result
    assert capacity == pytest.approx(60)
    # With 20% of the cores busy at rest, requests use 30%: 50/s x (0.6 - 0.2) / 0.3.
    capacity, _ = analysis.measured_capacity([result], 0.6, idle_share=0.2)
    assert capacity == pytest.approx(50 * 0.4 / 0.3)
    at_rest = analysis.measure_stage(stage, 1000, 1100, requests, samples, the_plan, 0.4)
    assert at_rest.cpu_ms_per_request == pytest.approx(12)  # (1.0 - 0.4) cores / 50 per s


def verdicts_of(stages, the_plan, ledger_result=None, generator_cpu=(0.2,) * 10):
    ledger_result = ledger_result or {"acknowledged": 10, "completed": 2}
    found = analysis.verdicts(the_plan, stages, ledger_result, list(generator_cpu), {"capacity"})
    return {v.name: v for v in found}


def stage_result(**changes):
    base = analysis.StageResult(
        "s",
        10,
        10.0,
        0,
        100,
        requests=1000,
        rps=10.0,
        p95_ms=100,
        utilisation=0.6,
        cpu_utilisation=math.nan,
        expected_rps=10.0,
        peak_server_connections=2,
        peak_client_waiting=0,
        pool_wait_ms=0.0,
    )
    return replace(base, **changes)


def test_errors_waits_and_missing_writes_fail_their_verdicts():
    the_plan, _ = fake_plan()
    below = stage_result(failures=1, pool_wait_ms=2.5, offered_rps=1.0)
    above = stage_result(failures=50, offered_rps=the_plan.model["capacity_rps"] * 1.2)
    found = verdicts_of([below, above], the_plan, {"acknowledged": 5, "missing_primary": 1})
    assert found["no errors below capacity"].passed is False
    assert "1 failed of 1000" in found["no errors below capacity"].measured  # not the 50 above
    assert found["pgbouncer waits below capacity"].passed is False
    assert found["ledger"].passed is False
    assert verdicts_of([stage_result()], the_plan)["ledger"].passed is True
    assert verdicts_of([stage_result()], the_plan, {"acknowledged": 0})["ledger"].passed is False


def test_a_run_whose_generator_saturated_or_fell_behind_is_invalid():
    the_plan, _ = fake_plan()
    assert verdicts_of([stage_result()], the_plan)["valid run"].passed is True
    busy = [0.95] * 5 + [0.2] * 5
    assert verdicts_of([stage_result()], the_plan, generator_cpu=busy)["valid run"].passed is False
    behind = stage_result(rps=8.0, expected_rps=10.0)
    assert verdicts_of([behind], the_plan)["valid run"].passed is False
    lost = {"acknowledged": 1, "records_lost": 3}
    assert verdicts_of([stage_result()], the_plan, lost)["valid run"].passed is False


@pytest.fixture
def deploy_copy(tmp_path, monkeypatch):
    """local and test as in the repository (test's inputs link to local's), in a scratch deploy/
    that the calibration writes to."""
    (tmp_path / "local").mkdir()
    for name in ("capacity.yml", "inventory.yml", "calibration.yml"):
        shutil.copy(model.DEPLOY_DIR / "local" / name, tmp_path / "local" / name)
    (tmp_path / "test").mkdir()
    for name in ("capacity.yml", "inventory.yml"):
        (tmp_path / "test" / name).symlink_to(f"../local/{name}")
    shutil.copy(model.DEPLOY_DIR / "test" / "calibration.yml", tmp_path / "test")
    monkeypatch.setattr(cli, "DEPLOY_DIR", tmp_path)
    return tmp_path


SERVICE = {
    "page_get": (12.34, 40.2, 100),
    "page_post": (20.0, 61.0, 100),
    "start": (5.0, 15.0, 50),
    "results": (30.0, 90.0, 10),
}


def test_calibration_writes_its_own_file_and_no_other(deploy_copy):
    before = {path: path.read_text() for path in deploy_copy.glob("*/*.yml")}
    alone = stage_result(service_ms=SERVICE)
    target = stage_result(cpu_ms_per_request=17.25)
    written = write_calibration("test", alone, target, 1.5, 0.42)
    assert written["page_get_ms"] == 12.3
    after = {path: path.read_text() for path in deploy_copy.glob("*/*.yml")}
    changed = [path.relative_to(deploy_copy) for path in after if after[path] != before[path]]
    assert [str(path) for path in changed] == ["test/calibration.yml"]  # not local's, no inputs
    text = (deploy_copy / "test" / "calibration.yml").read_text()
    assert text.startswith("# Written by `make calibrate ENV=test`")
    inputs = model.load("test", deploy_copy)
    assert inputs.calibrated is True
    assert (inputs.page_get_ms, inputs.page_post_p99_ms, inputs.results_ms) == (12.3, 61, 30.0)
    assert (inputs.db_transaction_ms, inputs.cpu_ms_per_request) == (1.5, 17.2)
    assert inputs.cpu_idle_cores == 0.42
    assert model.load("local", deploy_copy) == model.load("local")
    # It records this machine, so it holds here.
    assert calibration.stale("test", calibration.fingerprint(inputs), deploy_copy) is None
    fingerprint = yaml.safe_load(text)["fingerprint"]
    assert fingerprint["hosts"]["shared_cores"] == inputs.shared_cores


def test_a_calibration_that_missed_something_writes_nothing(deploy_copy):
    path = deploy_copy / "test" / "calibration.yml"
    before = path.read_text()
    seen = {"page_get": (1, 2, 3), "page_post": (1, 2, 3), "start": (1, 2, 3)}
    with pytest.raises(SystemExit, match="no results requests; run it longer"):
        write_calibration("test", stage_result(service_ms=seen), stage_result(), 1.0, 0.4)
    alone = stage_result(service_ms={**seen, "results": (1, 2, 3)})
    with pytest.raises(SystemExit, match="db_transaction_ms = nan"):
        write_calibration("test", alone, stage_result(cpu_ms_per_request=5.0), math.nan, 0.4)
    with pytest.raises(SystemExit, match=r"cpu_ms_per_request = -1\.0"):
        write_calibration("test", alone, stage_result(cpu_ms_per_request=-1.0), 1.0, 0.4)
    assert path.read_text() == before


def test_the_ledger_admits_only_uuids_and_resume_tokens(tmp_path):
    path = tmp_path / "ledger.csv"
    path.write_text(
        "kind,id,slug,token,page\n"
        "page,6f1c1d1e-0a4f-4c43-9b8e-0d4a3b9b2f10,demo,abcdefghijklmnopqrstuvwx,1\n"
        "done,abcdefghijklmnopqrstuvwx,demo,abcdefghijklmnopqrstuvwx,0\n"
    )
    assert ledger.read(path) == (
        ["6f1c1d1e-0a4f-4c43-9b8e-0d4a3b9b2f10"],
        ["abcdefghijklmnopqrstuvwx"],
    )
    path.write_text("kind,id,slug,token,page\ndone,x'); DROP TABLE t; --,d,t,0\n")
    with pytest.raises(ValueError, match="not a resume token"):
        ledger.read(path)


def test_the_ledger_says_when_each_page_was_acknowledged(tmp_path):
    path = tmp_path / "ledger.csv"
    path.write_text(
        "kind,id,slug,token,page,time\n"
        "page,6f1c1d1e-0a4f-4c43-9b8e-0d4a3b9b2f10,demo,abcdefghijklmnopqrstuvwx,1,1700000000.5\n"
        "page,7f1c1d1e-0a4f-4c43-9b8e-0d4a3b9b2f10,demo,abcdefghijklmnopqrstuvwx,2,1700000002.25\n"
        "done,abcdefghijklmnopqrstuvwx,demo,abcdefghijklmnopqrstuvwx,0,1700000003\n"
    )
    assert ledger.acknowledged_pages(path) == {
        "6f1c1d1e-0a4f-4c43-9b8e-0d4a3b9b2f10": 1700000000.5,
        "7f1c1d1e-0a4f-4c43-9b8e-0d4a3b9b2f10": 1700000002.25,
    }


def test_the_fleet_takes_ports_and_names_from_the_roles_and_the_environment():
    fleet = Fleet.of("test")
    assert fleet.name == "tally-test"  # deploy/test overrides local's settings
    port = topology()["tally_ports"]["pgbouncer"]
    assert fleet.setting("pgbouncer_port") == port  # the topology's, through the role default
    assert fleet.pgbouncer_psql()[:6] == ("psql", "-XAq", "-h", "127.0.0.1", "-p", str(port))
    assert fleet.setting("postgresql_app_database") == "tally"
    assert fleet.setting("app_server_timing") is True  # set by the local environment


def test_the_router_status_queries_are_counted_by_the_comment_they_carry():
    # The app's two status queries carry the tag after their first token (pg_stat_statements
    # drops a comment before it), and the samplers look for it.
    source = (ROOT / "app" / "routing" / "replicas.py").read_text()
    assert f'\nSTATUS_TAG = "{samplers.ROUTER_STATUS_TAG}"\n' in source
    assert source.count('_SQL = f"""\nSELECT {STATUS_TAG} ') == 2
    assert f"strpos(query, '{samplers.ROUTER_STATUS_TAG}') > 0" in samplers.ACTIVITY_SQL


def test_samplers_parse_what_psql_prints():
    pools = [
        "database|user|cl_active|cl_waiting|sv_active|sv_idle|sv_used|maxwait|maxwait_us",
        "tally|tally|3|1|2|0|1|0|250000",
        "tally_replica|tally|2|0|1|1|0|1|0",
        "pgbouncer|pgbouncer|1|0|0|0|0|0|0",
    ]
    assert samplers.parse_pools(pools) == {
        "pgb_cl_active": 5,
        "pgb_cl_waiting": 1,
        "pgb_sv_active": 3,
        "pgb_sv_total": 5,
        "pgb_maxwait_s": 1.0,
    }
    assert samplers.parse_activity(["2|5|1024|40"]) == {
        "pg_active": 2,
        "pg_connections": 5,
        "replication_lag_bytes": 1024,
        "router_status_queries": 40,
    }
    assert samplers.parse_activity(["0|3||7"]) == {  # a replica: no lag of its own
        "pg_active": 0,
        "pg_connections": 3,
        "router_status_queries": 7,
    }
    assert samplers.parse_redis(["7", "6"]) == {
        "redis_cache_clients": 7,
        "redis_sessions_clients": 6,
    }


def test_the_naive_deployment_goes_straight_to_the_primary_without_cache_or_replica():
    # Ports, user and database from the topology, as the app role writes them.
    top = topology()
    ports, user, database = (
        top["tally_ports"],
        top["tally_users"]["database"],
        top["tally_database"],
    )
    pgbouncer = f"127.0.0.1:{ports['pgbouncer']}"
    primary = f"10.77.0.31:{ports['postgresql']}"
    tuned = "\n".join(
        [
            'DJANGO_SETTINGS_MODULE="tally.settings"',
            f'TALLY_DATABASE_URL="postgres://{user}:s3cret@{pgbouncer}/{database}"',
            f'TALLY_REPLICA_URLS="db2=postgres://{user}:s3cret@{pgbouncer}/{database}_db2"',
            'TALLY_DB_CONN_MAX_AGE="60"',
        ]
    )
    naive = bench.naive_environment(tuned, pgbouncer, primary).splitlines()
    assert f'TALLY_DATABASE_URL="postgres://{user}:s3cret@{primary}/{database}"' in naive
    assert not any(line.startswith("TALLY_REPLICA_URLS") for line in naive)
    assert naive.count('TALLY_DB_CONN_MAX_AGE="0"') == 1
    assert 'TALLY_CACHE_ENABLED="false"' in naive
    assert 'TALLY_SESSION_ENGINE="django.contrib.sessions.backends.db"' in naive
    with pytest.raises(SystemExit, match="does not point at the local pgbouncer"):
        bench.naive_environment(f'TALLY_DATABASE_URL="postgres://x@{primary}/t"', pgbouncer, "h:1")


def test_pgbench_runs_the_apps_page_submit_as_one_statement():
    script = bench.pgbench_script(["11", "12"])
    assert "BEGIN;" not in script  # the save is its own transaction, as in the app
    commands = [command for command in script.split(";") if command.strip()]
    assert len(commands) == 2, commands  # the save, then the WAL position
    assert '"question_id": 11,' in script
    assert '"question_id": 12,' in script
    assert "ON CONFLICT (response_id, question_id) DO UPDATE" in commands[0]
    assert "pg_current_wal_lsn()" in commands[1]  # as the app's read-your-writes marker
    assert not re.search(r":[0-9]", script)  # nothing pgbench could take for a :variable


def test_the_bench_keeps_the_best_stage_within_the_objective():
    stages = [
        stage_result(users=1, submissions_per_s=5.0, p95_ms=40),
        stage_result(users=8, submissions_per_s=30.0, p95_ms=300),
        stage_result(users=16, submissions_per_s=35.0, p95_ms=900),  # too slow
        stage_result(users=32, submissions_per_s=40.0, p95_ms=200, failures=3),  # errors
    ]
    assert bench.best(stages, 500, "submissions_per_s").users == 8
    assert bench.best(stages[2:3], 500, "submissions_per_s") is None


def test_the_report_has_the_verdicts_the_stages_and_every_plot(tmp_path):
    the_plan, stage = fake_plan(web_hosts=2, web_worker_slots=3, shared_cores=2)
    requests = synthetic(rate=20, seconds=30, response_ms=40, server_ms=30, fail_every=7)
    samples = [(1000.0 + t, "cpu", "web1", 0.5) for t in range(30)]
    samples += [(1000.0 + t, "db1", "pg_connections", 3) for t in range(30)]
    result = analysis.measure_stage(stage, 1000, 1030, requests, samples, the_plan)
    found = analysis.verdicts(the_plan, [result], {"acknowledged": 3}, [0.1], {"ledger"})
    index = report.write(tmp_path, the_plan, requests, samples, [result], found, {}, {})
    page = index.read_text()
    assert "<td>ledger</td>" in page
    assert "PASS" in page
    assert "FAIL (not judged)" in page  # 86 failures below capacity, printed only
    for name in ("throughput.svg", "latency.svg", "pg_connections.svg", "cpu.svg", "stages.svg"):
        assert f"src='{name}'" in page
        assert (tmp_path / name).read_text().startswith("<?xml")


def test_a_fleet_finds_a_setting_the_provision_wrote_after_it_was_described(monkeypatch):
    """The e2e fixture describes the fleet of a fresh clone before `make provision` writes the
    capacity model's values (capacity.generated.yml); a drill that reads one later gets it."""
    from loadtests import fleet as fleet_module

    described = fleet_module.Fleet.of("test")  # its ports and names from deploy/test
    described.values.pop("app_timeout", None)  # as on a fresh clone, before any provision
    port = described.port("gunicorn")
    written: dict = {}
    monkeypatch.setattr(fleet_module, "settings", lambda env: dict(written))
    written["app_timeout"] = 20
    assert described.setting("app_timeout") == 20
    assert described.port("gunicorn") == port, "what it knew is kept"
    with pytest.raises(KeyError):
        described.setting("never_written")


# The app's port, from the one topology (deploy/test names the fleet).
APP_PORT = Fleet.of("test").port("gunicorn")


class _FleetOnAnyDay:
    """A fleet's answers to what the drills' whole-fleet check asks: nft sets and tables, and
    each web host's /readyz. `broken` holds what is wrong on it today."""

    def __init__(self, broken: set[str]):
        self.broken = broken
        self.env = "test"
        self.groups = {"web": ["web1", "web2"], "db": ["db1", "db2"], "lb": ["lb1"]}

    def hosts(self, group):
        return self.groups.get(group, [])

    def replicas(self):
        return [{"host": "db2", "alias": "replica_db2"}]

    def port(self, service):
        return APP_PORT

    def run(self, host, *argv, **_):
        def answer(stdout="", returncode=0):
            stderr = "Error: No such file or directory" if returncode else ""
            return SimpleNamespace(stdout=stdout, stderr=stderr, returncode=returncode)

        if argv[:3] == ("nft", "list", "table"):
            return answer(returncode=0 if f"cut {host}" in self.broken else 1)
        if argv[:3] == ("nft", "list", "set"):
            name = argv[-1]
            if f"{name} {host}" in self.broken:
                return answer(
                    f"set {name} {{\n  type inet_service\n  elements = {{ {APP_PORT} }}\n}}"
                )
            return answer(f"set {name} {{\n  type inet_service\n}}")
        usable = f"replica {host}" not in self.broken
        ready = {"ready": True, "replicas": {"replica_db2": {"ok": usable}}}
        return answer(json.dumps(ready))


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        (set(), []),
        ({"draining web1"}, ["web1: drained"]),
        ({"shunned lb1"}, [f"lb1: the upstream check holds {APP_PORT} out of rotation"]),
        ({"cut db2"}, ["db2: the drills' table tally_drill still cuts it off"]),
        ({"replica web2"}, ["web2: replica_db2 not usable"]),
    ],
)
def test_a_drill_starts_only_from_a_whole_fleet(broken, named):
    """What an earlier drill (or a person) left broken is named, so that it is not measured as
    the next drill's cost."""
    problems = drills._not_whole(_FleetOnAnyDay(broken))
    assert len(problems) == len(named)
    for problem, start in zip(problems, named, strict=True):
        assert problem.startswith(start), problem


def test_a_fleet_that_cannot_be_asked_is_not_taken_for_whole():
    """nft or docker failing is an error, not an empty answer."""

    class Unreachable(_FleetOnAnyDay):
        def run(self, host, *argv, **_):
            return SimpleNamespace(stdout="", stderr="Error: No such container", returncode=1)

    with pytest.raises(drills.DrillError, match="No such container"):
        drills._not_whole(Unreachable(set()))
