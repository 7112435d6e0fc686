"""End to end: a fleet provisioned from nothing serves surveys through nginx over HTTPS.

Each check looks at the real hosts: PostgreSQL on the primary and on every replica, pgbouncer
on the web hosts, Redis on cache1, the bucket on s3, the firewall on every host. Hosts, ports
and users come from the inventory and the topology (loadtests/fleet.py). The fleet fixture
(conftest.py) provisions twice; the second run must change nothing.
"""

import hashlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from loadtests.fleet import vault
from loadtests.forms import Form
from loadtests.samplers import APP_READS_SQL
from provisioning import make

pytestmark = pytest.mark.usefixtures("fleet")
# pgbouncer as the samplers read it: SHOW POOLS (clients waiting) and SHOW STATS (wait and
# transaction time).
POOL_METRICS = ("pgb_cl_waiting", "pgb_wait_us", "pgb_xact_us")
# Each database host as the samplers read it: backends, and the router's status queries so far.
DB_METRICS = ("pg_connections", "router_status_queries")


def _session(fleet):
    session = requests.Session()
    # Only the fleet's own CA: no CA bundle or proxy from the environment (REQUESTS_CA_BUNDLE
    # would silently replace `verify`).
    session.trust_env = False
    session.verify = str(fleet.ca)
    return session


def _post(session, fleet, page, form):
    """Submit a form as a browser does: same-origin Referer and Origin headers."""
    return session.post(
        fleet.url + form.action,
        data=form.fields,
        headers={"Referer": page.url, "Origin": fleet.url},
    )


def take_survey(fleet):
    """Take the first survey on the front page to completion; returns (slug, token)."""
    session = _session(fleet)
    front = session.get(fleet.url + "/")
    assert front.status_code == 200
    slug = re.search(r'href="/s/([\w-]+)/"', front.text).group(1)
    page = session.get(f"{fleet.url}/s/{slug}/")
    page = _post(session, fleet, page, Form(page.text))
    token = re.search(rf"/s/{slug}/r/([\w-]+)/", page.url).group(1)
    pages = 0
    while "/p/" in page.url:
        assert page.status_code == 200, page.text[:2000]
        page = _post(session, fleet, page, Form(page.text))
        pages += 1
    assert page.url.endswith("/review/"), page.url
    done = _post(session, fleet, page, Form(page.text))
    assert done.status_code == 200
    assert done.url.endswith("/done/")
    return slug, token, pages


@pytest.fixture(scope="module")
def survey(fleet):
    slug, token, pages = take_survey(fleet)
    return {"slug": slug, "token": token, "pages": pages}


def test_a_second_provision_changes_nothing(fleet):
    recap = fleet.runs["warm"].recap()
    assert recap, fleet.runs["warm"].output[-3000:]
    changed = {host: counters["changed"] for host, counters in recap.items()}
    assert set(changed.values()) == {0}, (changed, fleet.runs["warm"].changed_tasks())
    timings = ", ".join(f"{name} provision {run.seconds:.0f}s" for name, run in fleet.runs.items())
    print(f"\n{timings}; changed on the second run: {changed}")


def _answers_on(fleet, host, token):
    return int(
        fleet.sql(
            host,
            "SELECT count(*) FROM surveys_answer a JOIN surveys_response r ON r.id = a.response_id"
            f" WHERE r.token::text = '{token}' AND r.completed_at IS NOT NULL",
        )[0][0]
    )


def _primary(fleet):
    return fleet.hosts("db_primary")[0]


def test_the_test_fleet_has_two_replicas(fleet):
    assert len(fleet.replicas()) == 2


def test_a_survey_taken_through_nginx_is_on_the_primary_and_then_every_replica(fleet, survey):
    assert survey["pages"] >= 2
    on_primary = _answers_on(fleet, _primary(fleet), survey["token"])
    assert on_primary > 0
    deadline = time.monotonic() + 10
    for replica in fleet.hosts("db_replica"):
        while _answers_on(fleet, replica, survey["token"]) != on_primary:
            assert time.monotonic() < deadline, f"{replica} never caught up"
            time.sleep(0.2)


def test_each_replica_streams_from_the_primary_through_its_own_slot(fleet):
    rows = fleet.sql(
        _primary(fleet),
        "SELECT r.application_name, r.state, s.slot_name, s.active FROM pg_stat_replication r"
        " JOIN pg_replication_slots s ON s.active_pid = r.pid ORDER BY s.slot_name",
    )
    expected = [[r["host"], "streaming", r["name"], "t"] for r in fleet.replicas()]
    assert rows == sorted(expected, key=lambda row: row[2])
    primary_address = fleet.address(_primary(fleet))
    for replica in fleet.replicas():
        receiver = fleet.sql(
            replica["host"], "SELECT status, slot_name, sender_host FROM pg_stat_wal_receiver"
        )
        assert receiver == [["streaming", replica["name"], primary_address]]


def test_every_web_hosts_pgbouncer_has_an_entry_per_replica(fleet):
    password = vault(fleet.env)["vault_pgbouncer_stats_password"]
    servers = [_primary(fleet), *(r["host"] for r in fleet.replicas())]
    entries = [fleet.database, *(r["database"] for r in fleet.replicas())]
    expected = {
        entry: (fleet.address(server), str(fleet.port("postgresql")), fleet.database)
        for entry, server in zip(entries, servers, strict=True)
    }
    for host in fleet.hosts("web"):
        databases = {
            row["name"]: (row["host"], row["port"], row["database"])
            for row in fleet.pgbouncer(host, "SHOW DATABASES", password)
            if row["name"] != "pgbouncer"
        }
        assert databases == expected, host


def test_the_app_reads_from_the_replica_aliases_its_environment_names(fleet):
    env = fleet.exec(fleet.hosts("web")[0], "grep", "^TALLY_REPLICA_URLS=", "/etc/tally/tally.env")
    items = env.strip().split("=", 1)[1].strip('"').split(",")
    names = [item.split("=", 1)[0] for item in items]
    databases = [item.rsplit("/", 1)[1] for item in items]
    assert names == [r["name"] for r in fleet.replicas()]
    assert databases == [r["database"] for r in fleet.replicas()]
    # The drills find each replica in the app's own view by the alias the fleet gives it.
    ready = fleet.exec(
        fleet.hosts("web")[0], "curl", "-s", f"http://127.0.0.1:{fleet.port('gunicorn')}/readyz"
    )
    assert sorted(json.loads(ready)["replicas"]) == sorted(r["alias"] for r in fleet.replicas())


def _app_reads(fleet, host):
    return int(fleet.sql(host, APP_READS_SQL.format(user=fleet.user("database")))[0][0])


def test_every_replica_serves_the_apps_reads(fleet):
    """With the counters reset first, surveys taken through nginx show up as the app's
    SELECTs on each replica, so the check cannot pass on old numbers."""
    replicas = fleet.hosts("db_replica")
    for host in replicas:
        fleet.sql(host, "SELECT pg_stat_statements_reset()")
        assert _app_reads(fleet, host) == 0
    deadline = time.monotonic() + 120
    while not all(_app_reads(fleet, host) > 0 for host in replicas):
        assert time.monotonic() < deadline, {host: _app_reads(fleet, host) for host in replicas}
        take_survey(fleet)


def test_results_pages_are_read_on_a_replica(fleet, survey):
    """A new client's results page (no read-your-writes pin) is counted on a replica, never on
    the primary. The page may be served from the cache (the load of an earlier test read it):
    it is asked for again until a copy goes stale and is rebuilt, for at most the freshness the
    page states plus a margin."""
    query = (
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
        " WHERE query ILIKE '%surveys_answer%' AND query NOT ILIKE '%pg_stat_statements%'"
    )
    hosts = [_primary(fleet), *fleet.hosts("db_replica")]
    before = {host: int(fleet.sql(host, query)[0][0]) for host in hosts}
    timings, deadline = [], None
    while True:
        results = _session(fleet).get(f"{fleet.url}/s/{survey['slug']}/results/")
        assert results.status_code == 200
        timings.append(results.headers.get("Server-Timing"))
        if deadline is None:
            fresh = int(re.search(r"Updated every (\d+) seconds", results.text).group(1))
            deadline = time.monotonic() + fresh + 15
        after = {host: int(fleet.sql(host, query)[0][0]) for host in hosts}
        if after != before or time.monotonic() > deadline:
            break
        time.sleep(2)
    read = [host for host in fleet.hosts("db_replica") if after[host] > before[host]]
    assert read, (before, after, timings)
    assert after[_primary(fleet)] == before[_primary(fleet)], (before, after)


def test_sessions_are_kept_in_the_session_redis(fleet, survey):
    secrets = vault(fleet.env)
    cache = fleet.hosts("cache")[0]

    def redis(instance, *command):
        """redis-cli on an instance as its app user; the password travels by name only."""
        return fleet.exec(
            cache,
            *("redis-cli", "-p", str(fleet.port(f"redis_{instance}"))),
            *("--user", fleet.user(f"redis_{instance}"), "--no-auth-warning", *command),
            env={"REDISCLI_AUTH": secrets[f"vault_redis_{instance}_password"]},
        )

    assert int(redis("sessions", "DBSIZE").strip()) > 0
    assert redis("cache", "--scan", "--pattern", "*session*").strip() == ""


def test_static_files_come_from_the_bucket_with_long_lived_cache_headers(fleet):
    session = _session(fleet)
    page = session.get(fleet.url + "/").text
    name, digest = re.search(r'href="(/static/surveys/tally\.([0-9a-f]{12})\.css)"', page).groups()
    css = session.get(fleet.url + name)
    assert css.status_code == 200
    assert hashlib.md5(css.content, usedforsecurity=False).hexdigest()[:12] == digest
    assert "max-age=31536000" in css.headers["Cache-Control"]
    assert "immutable" in css.headers["Cache-Control"]


def test_plain_http_redirects_to_https(fleet):
    reply = _session(fleet).get(
        f"http://127.0.0.1:{fleet.http_port}/s/x/?a=1", allow_redirects=False, timeout=10
    )
    assert reply.status_code == 301
    assert reply.headers["Location"] == f"{fleet.url}/s/x/?a=1"


def test_https_responses_carry_hsts(fleet):
    reply = _session(fleet).get(fleet.url + "/")
    assert reply.headers["Strict-Transport-Security"].startswith("max-age=31536000")


# (inventory group, service in tally_ports) of the data tier, which only web hosts may reach.
DATA_SERVICES = [
    ("db_primary", "postgresql"),
    ("db_replica", "postgresql"),
    ("cache", "redis_cache"),
    ("cache", "redis_sessions"),
]


@pytest.mark.parametrize(("group", "service"), [*DATA_SERVICES, ("web", "pgbouncer")])
def test_the_load_balancer_cannot_reach_data_services(fleet, group, service):
    lb = fleet.hosts("lb")[0]
    for target in fleet.hosts(group):
        assert not fleet.connects(lb, target, fleet.port(service)), target


@pytest.mark.parametrize(("group", "service"), [*DATA_SERVICES, ("objectstore", "s3")])
def test_web_hosts_reach_their_services(fleet, group, service):
    for web in fleet.hosts("web"):
        for target in fleet.hosts(group):
            assert fleet.connects(web, target, fleet.port(service)), (web, target)


def test_database_hosts_reach_each_other_and_no_other_tier_but_web_reaches_them(fleet):
    """Every database host admits PostgreSQL from every other: a replica streams from the
    primary, and a replica that ansible/failover.yml promotes takes its peers' replication at
    once, before the firewalls are rewritten for the new roles (which would lengthen the
    window in which writes fail). The cache, the bucket's and the scratch host never reach them
    (the load balancer: above). The probes run side by side: a refused one waits out its
    timeout."""
    port = fleet.port("postgresql")
    databases = fleet.hosts("db")
    peers = [(source, target) for source in databases for target in databases if source != target]
    others = fleet.hosts("cache") + fleet.hosts("objectstore") + fleet.hosts("restore")
    strangers = [(source, target) for source in others for target in databases]
    pairs = peers + strangers
    with ThreadPoolExecutor(len(pairs)) as pool:
        reached = dict(
            zip(pairs, pool.map(lambda pair: fleet.connects(*pair, port), pairs), strict=True)
        )
    assert [pair for pair in peers if not reached[pair]] == []
    assert [pair for pair in strangers if reached[pair]] == []


def test_an_unknown_environment_is_refused_with_the_list_of_environments():
    run = make("provision", "ENV=nope")
    assert run.returncode != 0
    assert "Unknown ENV 'nope'" in run.output
    listed = run.output.split("Environments:", 1)[1].split()
    assert "local" in listed
    assert "capacity" not in listed, "deploy/capacity is the model, not an environment"


def test_a_light_load_test_writes_its_report_with_no_errors_and_a_full_ledger(fleet, tmp_path):
    """`make loadtest`'s machinery on a short light load: a check of the whole path (Locust,
    samplers, ledger, report), not of the sizing; the capacity verdicts are printed only."""
    out = tmp_path / "report"
    args = "--shape light --users 8 --think 1 --seconds 40 --warmup 5"
    run = make("loadtest", "ENV=test", f"LOADTEST_ARGS={args} --out {out}", timeout=600)
    assert run.returncode == 0, run.report(3000)
    assert f"loadtest: report {out / 'index.html'}" in run.output
    summary = json.loads((out / "summary.json").read_text())
    verdicts = {v["name"]: v for v in summary["verdicts"]}
    assert verdicts["no errors below capacity"]["passed"] is True
    assert verdicts["ledger"]["passed"] is True
    assert verdicts["no stale reads"]["passed"] is True
    assert summary["ledger"]["rereads"] > 50
    assert summary["ledger"]["stale_reads"] == 0
    assert summary["ledger"]["acknowledged"] > 50
    assert summary["ledger"]["missing_primary"] == summary["ledger"]["missing_replica"] == 0
    light = summary["stages"][0]
    assert light["requests"] > 200
    assert light["failures"] == 0
    assert light["server_mean_ms"] > 0  # Server-Timing reached the generator through nginx
    # With replicas, reads cost the router status queries, counted on the database hosts.
    assert light["router_status_per_request"] > 0
    # Samplers saw the fleet: every database host's connections and the read router's status
    # queries there, every pgbouncer's pools and counted waits, the session store's clients,
    # every host's CPU and the generator's.
    samples = (out / "samples.csv").read_text()
    needles = [f",{host},{metric}," for host in fleet.hosts("db") for metric in DB_METRICS]
    needles += [f",{host},{metric}," for host in fleet.hosts("web") for metric in POOL_METRICS]
    needles += [f",{host},redis_sessions_clients," for host in fleet.hosts("cache")]
    needles += [f",cpu,{host}," for host in fleet.hosts("all")] + [",cpu,generator,"]
    assert [needle for needle in needles if needle not in samples] == []
    page = (out / "index.html").read_text()
    assert "Predictions and measurements" in page
    assert all((out / name).exists() for name in ("throughput.svg", "latency.svg", "cpu.svg"))
