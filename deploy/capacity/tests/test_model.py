"""The capacity model: its rules on hand-worked inputs, its checks, the shipped environments, and
the spreadsheet's formulas recalculated (with the `formulas` package) against the Python values.
(Replicas, workers per core, predictions: test_topology.py; calibration files: test_calibration.py.)
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import warnings

import pytest
import yaml

from capacity import __main__ as cli
from capacity import model
from capacity.outputs import spreadsheet

SHIPPED = ("local", "example", "test")
REPO = model.DEPLOY_DIR.parent


def small(**changes) -> model.Inputs:
    """Round numbers, so each rule can be worked out by hand (see test_rules_by_hand)."""
    values = dict(
        lb_hosts=1,
        web_hosts=2,
        db_replicas=1,
        lb_cores=2,
        lb_ram_mb=1024,
        web_cores=2,
        web_ram_mb=2048,
        db_cores=2,
        db_ram_mb=4096,
        cache_cores=1,
        cache_ram_mb=1000,
        shared_cores=0,
        concurrent_takers=1000,
        think_time_s=10,
        pages_per_survey=4,
        requests_per_page=2,
        db_transactions_per_page=3,
        primary_transaction_share=0.6,
        start_requests_per_survey=2,
        results_views_per_survey=0,
        redis_connections_per_request=1,
        client_connections_per_taker=1,
        survey_starts_per_day=1024,
        calibrated=False,
        page_get_ms=10,
        page_get_p99_ms=50,
        page_post_ms=30,
        page_post_p99_ms=100,
        start_ms=20,
        start_p99_ms=80,
        start_db_transactions=1,
        results_ms=40,
        results_p99_ms=300,
        results_db_transactions=2,
        db_transaction_ms=2,
        cpu_ms_per_request=0,
        cpu_idle_cores=0,
        target_utilisation=0.5,
        latency_p95_ms=250,
        gunicorn_threads=1,
        worker_rss_mb=200,
        web_reserved_mb=448,
        timeout_multiple=20,
        timeout_min_s=20,
        timeout_max_s=60,
        reload_overlap=2,
        replica_status_ttl_s=1,
        connection_buffer_percent=25,
        min_server_pool=2,
        pool_wait_probability=0.001,
        pool_admin_clients=10,
        superuser_reserved_connections=3,
        admin_connections=6,
        max_connections_cap=0,
        pg_max_worker_processes=8,
        maintenance_work_mem_cap_mb=2048,
        redis_admin_clients=10,
        redis_memory_share_percent=60,
        bytes_per_session=1024,
        session_age_days=10,
        session_headroom_percent=50,
        new_sessions_per_client_hour=20,
        min_cache_mb=64,
        fd_hard_limit=20000,
        fd_slack=512,
        wal_kb_per_submission=8,
        wal_compressed_percent=25,
        db_kb_per_survey=40,
        db_size_gb=10,
        backup_compressed_percent=20,
        backup_retention_full=2,
        backup_retention_diff=6,
        full_backup_every_days=7,
        synchronous_standbys=0,
        sync_commit_ms=1.5,
    )
    values.update(changes)
    return model.Inputs(**values)


def test_shared_cores_bound_capacity_when_they_run_out_first():
    # 2 shared cores x 0.5 / 8 ms = 125 requests/s, below the workers' 250.
    v = model.evaluate(small(shared_cores=2, cpu_ms_per_request=8)).values
    assert v["cpu_capacity_rps"] == pytest.approx(125)
    assert v["capacity_rps"] == pytest.approx(125)
    # What the fleet burns at rest comes off first: (1 - 0.2) / 8 ms = 100 requests/s.
    v = model.evaluate(small(shared_cores=2, cpu_ms_per_request=8, cpu_idle_cores=0.2)).values
    assert v["capacity_rps"] == pytest.approx(100)
    with pytest.raises(ValueError, match="cpu_idle_cores 1 leaves nothing"):
        small(shared_cores=2, cpu_ms_per_request=8, cpu_idle_cores=1)
    # With a cheaper request the workers are the bound again.
    v = model.evaluate(small(shared_cores=2, cpu_ms_per_request=2)).values
    assert v["capacity_rps"] == pytest.approx(250)
    with pytest.raises(ValueError, match="cpu_ms_per_request must be above 0"):
        small(shared_cores=2, cpu_ms_per_request=0)


def test_rules_by_hand():
    v = model.evaluate(small()).values
    # A survey: 2 start requests + 4 pages x (GET + POST) = 10 requests.
    assert v["requests_per_survey"] == 10
    # (2 x 20 + 4 x 10 + 4 x 30) / 10 = 20 ms.
    assert v["mean_service_ms"] == pytest.approx(20)
    # (4 x 3 + 2 x 1) / 10 = 1.4 transactions of 2 ms in a 20 ms request: 14% of the time.
    assert v["db_transactions_per_request"] == pytest.approx(1.4)
    assert v["db_time_share"] == pytest.approx(0.14)
    # 2 x 2 cores + 1 = 5; RAM allows (2048 - 448) / 200 = 8.
    assert v["app_workers"] == 5
    # 20 x 300 ms = 6 s, below the 20 s floor.
    assert v["app_timeout"] == v["nginx_upstream_timeout"] == 20
    # Binomial(5 workers, 0.14) in a transaction at once: P(<= 3) = 0.9983 < 0.999 and
    # P(<= 4) = 0.99995, so a pool of 4 (the mean, 5 x 0.14 = 0.7, would leave bursts waiting).
    assert model.critbinom(5, 0.14, 0.999) == 4
    assert model.critbinom(5, 0.14, 0.99) == 3
    assert v["pgbouncer_default_pool_size"] == 4
    # The whole pool stays open: no request waits for a server login.
    assert v["pgbouncer_min_pool_size"] == 4
    assert v["pgbouncer_reserve_pool_size"] == 1  # 4 x 25% = 1
    assert v["pgbouncer_max_db_connections"] == 5
    # (2 generations x 5 workers x 2 entries + 10) x 1.25 = 37.5 -> 38.
    assert v["pgbouncer_max_client_conn"] == 38
    # 2 web hosts x 5; (10 + 6 admin) x 1.25 = 20, + 3 superuser-reserved = 23.
    assert v["pooled_server_connections"] == 10
    assert v["postgresql_max_connections"] == 23
    assert v["pool_connection_room"] == 14
    # PGTune on 4096 MB: 1/4, 3/4, 1/16, and (4096 - 1024) / ((23 + 8) x 3) = 33.03 -> 33.
    assert v["postgresql_shared_buffers"] == 1024
    assert v["postgresql_effective_cache_size"] == 3072
    assert v["postgresql_maintenance_work_mem"] == 256
    assert v["postgresql_work_mem"] == 33
    # Redis: 2 hosts x 2 generations x 5 workers x 1 x 1.25 = 25, + 10 admin.
    assert v["redis_cache_maxclients"] == v["redis_sessions_maxclients"] == 35
    # 1024 starts/day x 10 days x 1 KiB x 1.5 = 15 MiB; the cache gets 600 - 15.
    assert v["redis_sessions_maxmemory"] == 15
    assert v["redis_cache_maxmemory"] == 585
    # nginx: 2 x (1000 clients + 10 upstream) x 1.25 / 2 workers = 1262.5 -> 1263.
    assert v["nginx_worker_connections"] == 1263
    assert v["nginx_worker_rlimit_nofile"] == 2526
    # max(2526, 35 + 32 + 512, 1000 + 512) -> 3 x 1024.
    assert v["common_limit_nofile"] == 3072
    assert v["app_nofile"] == 1024  # 512 + 2 x 5 + (1 + 2 + 2)
    assert v["pgbouncer_nofile"] == 1024  # 38 + 2 x 3 + 512
    # Little's law: 5 workers x 0.5 / 20 ms = 125 requests/s per host, 250 for two.
    assert v["host_capacity_rps"] == pytest.approx(125)
    assert v["worker_capacity_rps"] == pytest.approx(250)
    assert v["cpu_capacity_rps"] == pytest.approx(250)  # no shared cores: the workers bound it
    assert v["capacity_rps"] == pytest.approx(250)
    assert v["capacity_submissions_per_s"] == pytest.approx(100)  # 4 POSTs in 10 requests
    assert v["capacity_db_transactions_per_s"] == pytest.approx(350)
    assert v["active_server_connections"] == pytest.approx(0.7)  # 350/s x 2 ms
    # Closed model: 1000 takers x 10 requests / (4 x 10 s + 10 x 20 ms) = 248.76/s.
    assert v["survey_cycle_s"] == pytest.approx(40.2)
    assert v["offered_rps"] == pytest.approx(10000 / 40.2)
    assert v["offered_utilisation"] == pytest.approx(10000 / 40.2 * 0.02 / 10)
    assert v["web_hosts_needed"] == 2
    # Backups: 1000 x 4 / 40.2 = 99.5 submissions/s x 8 kB = 796 kB/s of WAL, 2.9 segments a
    # minute, a quarter of it uploaded.
    assert v["archive_kb_per_s"] == pytest.approx(4000 / 40.2 * 8)
    assert v["archive_segments_per_min"] == pytest.approx(4000 / 40.2 * 8 * 60 / 16384)
    assert v["archive_upload_kb_per_s"] == pytest.approx(4000 / 40.2 * 2)
    # A day: 1024 surveys x 4 pages x 8 kB x 25% = 8 MB archived; 1024 x 40 kB = 40 MB of growth.
    assert v["archive_mb_per_day"] == pytest.approx(8)
    assert v["db_growth_mb_per_day"] == pytest.approx(40)
    # 2 full backups a week apart: 14 days back at least. A full one is 20% of 10 GB = 2 GB; a
    # differential at most 7 days x 40 MB x 20% = 56 MB.
    assert v["restore_window_days"] == 14
    assert v["full_backup_gb"] == pytest.approx(2)
    assert v["diff_backup_gb"] == pytest.approx(56 / 1024)
    # 3 full + 6 differentials + 21 days of WAL: 6 + 6 x 56/1024 + 21 x 8/1024 GB.
    assert v["backup_bucket_gb"] == pytest.approx(6 + 6 * 56 / 1024 + 21 * 8 / 1024)
    # A month of growth: 30 x 40 MB x 20% in each of the 3 full backups.
    assert v["backup_bucket_growth_gb_per_30_days"] == pytest.approx(30 * 40 / 1024 * 0.2 * 3)
    assert model.evaluate(small()).failures() == []


def test_bounds_and_caps():
    # A slow endpoint: 20 x 4 s = 80 s, capped at 60.
    assert model.evaluate(small(results_p99_ms=4000)).values["app_timeout"] == 60
    # Little RAM: (1024 - 224) / 200 = 4 workers, fewer than 2 x 2 + 1.
    assert model.evaluate(small(web_ram_mb=1024, web_reserved_mb=224)).values["app_workers"] == 4
    # Much RAM: maintenance_work_mem stops at the cap; work_mem never goes below 4 MB.
    big = model.evaluate(small(db_ram_mb=65536)).values
    assert big["postgresql_maintenance_work_mem"] == 2048
    tiny = model.evaluate(small(db_ram_mb=256, admin_connections=400)).values
    assert tiny["postgresql_work_mem"] == 4
    # Database-heavy requests: Binomial(5, 0.7) needs all 5, never more than the worker slots.
    heavy = model.evaluate(small(db_transaction_ms=10)).values
    assert heavy["db_time_share"] == pytest.approx(0.7)
    assert heavy["pgbouncer_default_pool_size"] == 5
    assert model.evaluate(small(db_transaction_ms=14)).values["pgbouncer_default_pool_size"] == 5
    # No replica: one database entry per pgbouncer.
    assert model.evaluate(small(db_replicas=0)).values["db_entries"] == 1


def test_pools_beyond_max_connections_fail_loudly():
    failures = model.evaluate(small(max_connections_cap=12)).failures()
    assert len(failures) == 1
    message = failures[0]
    assert message.startswith("pools_fit_max_connections:")
    for fact in ("10 server connections", "2 web hosts", "pgbouncer_max_db_connections 5"):
        assert fact in message
    assert "postgresql_max_connections 12" in message
    assert "leaves 3" in message  # 12 - 3 superuser-reserved - 6 admin


def test_file_descriptors_beyond_the_limit_fail_loudly():
    # 6000 takers: 2 x 6010 x 1.25 / 2 = 7513 connections per worker, 15026 files; the hard
    # limit is 20000, but common_limit_nofile rounds up to 15360 and fits; at 8000 it does not.
    assert model.evaluate(small(concurrent_takers=6000, think_time_s=60)).failures() == []
    failures = model.evaluate(small(concurrent_takers=8000, think_time_s=100)).failures()
    names = [message.split(":", 1)[0] for message in failures]
    assert names == [
        "nginx_worker_rlimit_nofile_within_hard_limit",
        "common_limit_nofile_within_hard_limit",
    ]
    assert "nginx_worker_rlimit_nofile 20026 is beyond" in failures[0]
    assert "fd_hard_limit 20000" in failures[0]
    assert "common_limit_nofile 20480" in failures[1]


def test_target_beyond_capacity_fails_loudly():
    failures = model.evaluate(small(concurrent_takers=2000)).failures()
    assert [message.split(":", 1)[0] for message in failures] == ["target_within_capacity"]
    message = failures[0]
    assert "target load of 497.51 requests/s (2000 takers, 10 s think time)" in message
    assert "predicted capacity of 250 requests/s (2 web hosts x 125" in message
    assert "needs 4 web hosts" in message
    # Bounded by shared cores: more web hosts would not help, and the message says so.
    shared = small(concurrent_takers=2000, shared_cores=2, cpu_ms_per_request=8, cpu_idle_cores=0.2)
    message = model.evaluate(shared).failures()[0]
    assert "predicted capacity of 100 requests/s (2 shared cores" in message
    assert "0.20 of them busy at rest, 8 ms of CPU per request" in message
    assert "would not help" in message


def test_sessions_crowding_out_the_cache_fail_loudly():
    failures = model.evaluate(small(survey_starts_per_day=40000)).failures()
    assert [message.split(":", 1)[0] for message in failures] == ["sessions_leave_room_for_cache"]
    assert "sessions need 586 MB of the 600 MB" in failures[0]


def test_one_client_that_could_fill_the_session_store_fails_the_check():
    # 30 sessions/h for 10 days of 1 KiB sessions keep 7.03 MB, within the 10.47 MB of
    # headroom that 50% over 2,000 starts a day leaves; a limit of 100/h keeps 23.44 MB.
    base = model.evaluate(small(survey_starts_per_day=2000, new_sessions_per_client_hour=30))
    assert base.values["sessions_one_client_mb"] == pytest.approx(30 * 24 * 10 * 1024 / 1048576)
    assert base.values["session_headroom_mb"] == pytest.approx(30 - 2000 * 10 * 1024 / 1048576)
    assert "one_client_cannot_fill_the_session_store" not in " ".join(base.failures())
    loose = model.evaluate(small(survey_starts_per_day=2000, new_sessions_per_client_hour=100))
    failures = [m for m in loose.failures() if m.startswith("one_client_cannot_fill")]
    assert len(failures) == 1
    assert "keeps 23.44 MB of sessions for their 10 days" in failures[0]


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError, match="leaves no room for one worker"):
        small(web_ram_mb=300, web_reserved_mb=200)
    with pytest.raises(ValueError, match="target_utilisation must be at most 1"):
        small(target_utilisation=1.5)
    with pytest.raises(ValueError, match="page_get_ms must not be negative"):
        small(page_get_ms=-1)
    with pytest.raises(ValueError, match="synchronous_standbys 2 is more than the 1 replica"):
        small(db_replicas=1, synchronous_standbys=2)


def test_synchronous_commits_cost_each_page_post_its_wait():
    fast, sync = (model.evaluate(small(synchronous_standbys=n)).values for n in (0, 1))
    # Asynchronous: the measured times alone; synchronous: each page's POST waits 1.5 ms more,
    # its transaction holds a connection as long (over the page's transactions).
    assert fast["transaction_ms"] == fast["db_transaction_ms"]
    per_page = sync["db_transactions_per_page"]
    assert sync["transaction_ms"] == pytest.approx(sync["db_transaction_ms"] + 1.5 / per_page)
    extra = sync["pages_per_survey"] * 1.5 / sync["requests_per_survey"]
    assert sync["mean_service_ms"] == pytest.approx(fast["mean_service_ms"] + extra)
    assert sync["worker_capacity_rps"] < fast["worker_capacity_rps"]
    standbys = "postgresql_synchronous_standbys"
    assert (fast[standbys], sync[standbys]) == (0, 1)


@pytest.mark.parametrize("env", SHIPPED)
def test_shipped_environments_pass_their_checks(env):
    m = model.evaluate(model.load(env))
    assert m.failures() == []
    assert m.inputs.web_hosts >= m.values["web_hosts_needed"]
    # Hot standby: one max_connections for primary and replica, and the pools fit.
    assert m.values["pooled_server_connections"] <= m.values["pool_connection_room"]


def test_role_variables_are_required_by_the_roles_and_typed_for_the_services():
    defaults, required = {}, set()
    for role in sorted((REPO / "ansible" / "roles").iterdir()):
        defaults.update(yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {})
        specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
        for entry in specs["argument_specs"].values():
            options = entry.get("options") or {}
            required |= {name for name, spec in options.items() if spec.get("required")}
    names = set(model.ANSIBLE_VARS)
    # The model owns them: no role default that would hide a missing capacity.generated.yml.
    assert names <= required, names - required
    assert not names & set(defaults), names & set(defaults)
    ansible_vars = model.evaluate(model.load("example")).ansible_vars()
    assert ansible_vars["postgresql_shared_buffers"] == "8192MB"
    assert ansible_vars["redis_cache_maxmemory"].endswith("mb")
    assert ansible_vars["app_timeout"] == ansible_vars["nginx_upstream_timeout"]


def test_loader_refuses_unknown_and_missing_inputs(tmp_path):
    env = tmp_path / "odd"
    env.mkdir()
    shutil.copy(model.DEPLOY_DIR / "local" / "inventory.yml", env / "inventory.yml")
    data = yaml.safe_load((model.DEPLOY_DIR / "local" / "capacity.yml").read_text())
    data["web"]["workers"] = 9
    (env / "capacity.yml").write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r"web\.workers is not an input \(unknown\)"):
        model.load("odd", tmp_path)
    del data["web"]["workers"], data["limits"]["fd_slack"]
    (env / "capacity.yml").write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="missing inputs: fd_slack"):
        model.load("odd", tmp_path)


def test_cli_writes_every_file(tmp_path):
    assert cli.main(["local", "example", "--out", str(tmp_path)]) == 0
    for env in ("local", "example"):
        ansible_vars = yaml.safe_load((tmp_path / f"{env}.vars.yml").read_text())
        assert list(ansible_vars) == list(model.ANSIBLE_VARS)
        assert ansible_vars == model.evaluate(model.load(env)).ansible_vars()
        predictions = json.loads((tmp_path / f"{env}.predictions.json").read_text())
        assert predictions == model.evaluate(model.load(env)).predictions().as_dict()
        for key in ("capacity_rps", "saturation_rps", "capacity_submissions_per_s"):
            assert predictions[key] > 0
        # local is calibrated (its calibration.yml); example's are guesses.
        assert predictions["calibrated"] is (env == "local")
        assert "| `app_workers` |" in (tmp_path / f"{env}.md").read_text()
    assert (tmp_path / "capacity.xlsx").stat().st_size > 0


def test_cli_check_lists_every_failure(tmp_path, capsys):
    env = tmp_path / "tight"
    env.mkdir()
    shutil.copy(model.DEPLOY_DIR / "local" / "inventory.yml", env / "inventory.yml")
    data = yaml.safe_load((model.DEPLOY_DIR / "local" / "capacity.yml").read_text())
    data["workload"]["concurrent_takers"] = 40000
    data["connections"]["max_connections_cap"] = 12
    (env / "capacity.yml").write_text(yaml.safe_dump(data))
    assert cli.main(["tight", "--check", "--deploy-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "tight: 4 check(s) failed" in err
    for name in (
        "pools_fit_max_connections",
        "nginx_worker_rlimit_nofile_within_hard_limit",
        "common_limit_nofile_within_hard_limit",
        "target_within_capacity",
    ):
        assert f"- {name}: " in err
    assert not (tmp_path / "build").exists()
    assert cli.main(["local", "--check"]) == 0


def test_macros_expand_to_spreadsheet_functions():
    assert spreadsheet.expand_macros("UP(DOWN(a/b)*(c+1))+ROUNDUP(d,0)") == (
        "ROUNDUP(ROUND(INT(ROUND(a/b,6))*(c+1),6),0)+ROUNDUP(d,0)"
    )
    assert spreadsheet.to_cells("MAX(1,UP({x}/2))", {"x": "$B$7"}) == (
        "=MAX(1,ROUNDUP(ROUND($B$7/2,6),0))"
    )


# --- The spreadsheet recalculated ------------------------------------------------------------

PERTURBED = {
    # Every input moved, so no formula can match by accident of a default.
    "perturbed": dict(
        web_hosts=5,
        db_replicas=0,
        lb_hosts=2,
        lb_cores=3,
        web_cores=3,
        web_ram_mb=3000,
        db_cores=8,
        db_ram_mb=24000,
        cache_ram_mb=3000,
        concurrent_takers=1700,
        think_time_s=13,
        pages_per_survey=9,
        requests_per_page=2.5,
        db_transactions_per_page=4,
        start_requests_per_survey=3,
        results_views_per_survey=0.7,
        redis_connections_per_request=2,
        client_connections_per_taker=1.5,
        survey_starts_per_day=30000,
        page_get_ms=17.3,
        page_get_p99_ms=61,
        page_post_ms=41.9,
        page_post_p99_ms=180,
        start_ms=28.1,
        start_p99_ms=90,
        start_db_transactions=2,
        results_ms=77.7,
        results_p99_ms=2100,
        results_db_transactions=3,
        db_transaction_ms=6.3,
        target_utilisation=0.55,
        gunicorn_threads=2,
        worker_rss_mb=130,
        web_reserved_mb=400,
        timeout_multiple=15,
        connection_buffer_percent=30,
        min_server_pool=3,
        pool_admin_clients=7,
        admin_connections=9,
        maintenance_work_mem_cap_mb=1000,
        redis_memory_share_percent=55,
        bytes_per_session=1500,
        session_headroom_percent=40,
        fd_slack=700,
        workers_per_core=3.5,
        primary_transaction_share=0.55,
    ),
    # Two replicas on VMs of their own, bounded by the web hosts' cores.
    "replicas": dict(
        db_replicas=2,
        shared_cores=0,
        web_cores=4,
        web_ram_mb=8192,
        workers_per_core=6,
        web_cpu_ms_per_request=7.5,
        primary_transaction_share=0.7,
    ),
    # Beyond its limits, so the check cells must say FAIL where the model fails.
    "failing": dict(concurrent_takers=40000, max_connections_cap=12, survey_starts_per_day=9e5),
}


@pytest.fixture(scope="module")
def recalculated(tmp_path_factory):
    """Write every shipped and perturbed sheet into one workbook, recalculate it with the
    `formulas` package (which reads only the formulas, never Python's values) and return the
    models, where each name lives, and the recalculated cells."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import formulas

    models = {env: model.evaluate(model.load(env)) for env in SHIPPED}
    base = model.load("local")
    for name, changes in PERTURBED.items():
        models[name] = model.evaluate(dataclasses.replace(base, **changes))
    path = tmp_path_factory.mktemp("capacity") / "capacity.xlsx"
    cells = spreadsheet.write_workbook(models, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solution = formulas.ExcelModel().loads(str(path)).finish().calculate()
    values = {}
    for key, value in solution.items():
        sheet, cell = key.rsplit("!", 1)
        values[(sheet.split("]", 1)[1].rstrip("'").lower(), cell)] = value.value[0][0]
    return models, cells, values


def test_perturbed_inputs_really_differ_and_fail(recalculated):
    models, _, _ = recalculated
    assert models["perturbed"].values["db_entries"] == 1
    assert models["perturbed"].values["app_timeout"] == 32  # 15 x 2.1 s
    assert models["replicas"].values["db_entries"] == 3
    assert models["replicas"].predictions().bottleneck == "web cores"
    assert len(models["failing"].failures()) >= 4


@pytest.mark.parametrize("env", [*SHIPPED, *PERTURBED])
def test_spreadsheet_formulas_equal_the_model(recalculated, env):
    models, cells, values = recalculated
    m = models[env]
    failed = {message.split(":", 1)[0] for message in m.failures()}
    mismatches = []
    for r in model.RULES:
        got = float(values[(env, cells[env][r.name].replace("$", ""))])
        want = m.values[r.name]
        if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9):
            mismatches.append(f"{r.name}: spreadsheet {got}, model {want}")
    for c in model.CHECKS:
        got = values[(env, cells[env][c.name].replace("$", ""))]
        want = "FAIL" if c.name in failed else "ok"
        if got != want:
            mismatches.append(f"{c.name}: spreadsheet {got}, model {want}")
    assert mismatches == []
    # Every output cell is a formula over the inputs, not a value.
    assert len(model.RULES) + len(model.CHECKS) == len(cells[env]) - len(
        dataclasses.fields(model.Inputs)
    )
