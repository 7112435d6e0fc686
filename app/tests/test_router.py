"""The pinning read/write router: replicas for reads, the primary for writes and own writes."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError, connections, transaction
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from routing import PRIMARY, lsn, state
from routing.aliases import replica_aliases
from routing.middleware import COOKIE, ReadYourWritesMiddleware
from routing.replicas import DatabaseUnreachable, ReplicaPool, pool
from surveys.models import Response, Survey
from tests.conftest import https_client
from tests.helpers import (
    post_page,
    queries_by_alias,
    replica_reads,
    seeded_survey,
    start,
    valid_answers,
)
from tests.servers import wait_for

REPLICAS = settings.TALLY_REPLICA_ALIASES
# Where reads go when nothing pins them: the replicas, or the primary when there are none.
READERS = REPLICAS or [PRIMARY]
# Tests that fail a replica need one (two, to compare replay positions); in a run with fewer
# they are left out, and make test's runs with 1 and 2 replicas run them.
needs_a_replica = pytest.mark.replicas(1)
needs_two_replicas = pytest.mark.replicas(2)


def _read_alias():
    return Survey.objects.all().db


# --- Aliases from TALLY_REPLICA_URLS ----------------------------------------------------------


def test_replicas_are_named_after_their_inventory_hosts():
    url = "postgres://u:p@127.0.0.1:6432/tally_db2?sslmode=disable&x=1"
    assert replica_aliases([f"db2={url}", "web_db_3=postgres://h/tally_web_db_3"]) == [
        ("replica_db2", url),
        ("replica_web_db_3", "postgres://h/tally_web_db_3"),
    ]


def test_bare_replica_urls_keep_their_numbered_aliases():
    url = "postgres://u:p@h:6432/tally?application_name=x=y"
    assert replica_aliases([url, f"db3={url}"]) == [("replica1", url), ("replica_db3", url)]
    assert replica_aliases([]) == []


@pytest.mark.parametrize(
    "items",
    [
        ["DB2=postgres://h/t"],
        ["db-2=postgres://h/t"],
        ["db2"],
        ["d=postgres://a", "d=postgres://b"],
    ],
)
def test_a_malformed_or_repeated_replica_name_stops_startup(items):
    with pytest.raises(ImproperlyConfigured, match="TALLY_REPLICA_URLS"):
        replica_aliases(items)


def test_a_pin_that_does_not_outlast_the_lag_bound_stops_startup():
    env = {
        **os.environ,
        "TALLY_READ_YOUR_WRITES_SECONDS": "10",
        "TALLY_REPLICA_MAX_LAG_SECONDS": "10",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "must be greater than TALLY_REPLICA_MAX_LAG_SECONDS" in result.stderr


def test_each_replica_gets_its_alias_and_its_own_pgbouncer_entry(replication):
    """One alias per replica, named as TALLY_REPLICA_URLS names it, on its own pgbouncer entry;
    no replica alias at all without any (the rendering is checked in ansible/tests)."""
    assert [f"replica_{node.name}" for node in replication.replicas] == REPLICAS
    assert set(settings.DATABASES) == {PRIMARY, *REPLICAS}
    for node in replication.replicas:
        assert settings.DATABASES[f"replica_{node.name}"]["NAME"] == f"tally_{node.name}"


# --- Routing ------------------------------------------------------------------------------------


def test_reads_go_to_a_replica_and_writes_to_the_primary():
    assert _read_alias() in READERS
    survey = Survey.objects.create(slug="s", title="S")
    assert survey._state.db == PRIMARY


def test_reads_after_a_write_in_the_same_request_use_the_primary():
    Survey.objects.create(slug="s", title="S")
    assert _read_alias() == PRIMARY


def test_reads_inside_a_transaction_use_the_primary():
    with transaction.atomic(using=PRIMARY):
        assert _read_alias() == PRIMARY
    assert _read_alias() in READERS


def test_replica_safe_models_read_from_a_replica_even_after_a_write():
    Survey.objects.create(slug="s", title="S")
    with state.replica_safe(Survey):
        assert _read_alias() in READERS
        assert Response.objects.all().db == PRIMARY


def test_reads_are_spread_round_robin_over_healthy_replicas():
    seen = [_read_alias() for _ in range(2 * len(READERS))]
    assert sorted(seen) == sorted(READERS * 2)


def test_without_replicas_every_read_goes_to_the_primary(client):
    """TALLY_REPLICA_URLS empty or unset: no pool probes, readyz lists no replica."""
    pool.cache_clear()
    with override_settings(TALLY_REPLICA_ALIASES=[]), queries_by_alias() as queries:
        reads = {_read_alias() for _ in range(3)}
        body = client.get("/readyz").json()
    assert reads == {PRIMARY}
    assert body["replicas"] == {}
    assert replica_reads(queries) == 0


def test_migrations_run_on_the_primary_only():
    from routing.router import PinningReplicaRouter

    router = PinningReplicaRouter()
    assert router.allow_migrate(PRIMARY, "surveys")
    assert not router.allow_migrate("replica_db2", "surveys")


# --- Read-your-writes -------------------------------------------------------------------------


def _answer_reads(queries, alias):
    # The ORM quotes the table's name; the page GET's own statement (selectors.py) does not.
    return sum("FROM surveys_answer" in sql.replace('"', "") for sql in queries[alias])


def test_writer_reads_its_own_writes_while_the_replicas_are_paused(client, replication):
    """The headline behaviour: read-your-writes from the WAL position, not a blind timer."""
    definition = seeded_survey(replication)
    page_url = start(client)
    replication.wait_for_replay()
    # A second client, with the same resume link but none of the writer's cookies.
    other = https_client()
    replication.pause_replay()

    response = post_page(client, page_url, valid_answers(definition.page(1), variant=2))
    assert response.status_code == 302

    with queries_by_alias() as writer_queries:
        writer_view = client.get(page_url)
    assert _answer_reads(writer_queries, PRIMARY) == 1
    assert "Answer 2 to" in writer_view.content.decode()

    with queries_by_alias() as other_queries:
        other_view = other.get(page_url)
    assert other_view.status_code == 200
    assert sum(_answer_reads(other_queries, alias) for alias in READERS) == 1
    # Without replicas the primary serves everyone, so nobody reads a stale page.
    stale = "Answer 2 to" not in other_view.content.decode()
    assert stale == bool(REPLICAS)

    replication.resume_replay()
    replication.wait_for_replay()

    def writer_reads_from_a_reader():
        with queries_by_alias() as queries:
            view = client.get(page_url)
        return "Answer 2 to" in view.content.decode() and sum(
            _answer_reads(queries, alias) for alias in READERS
        )

    wait_for(writer_reads_from_a_reader, timeout=5, what="the writer to read from a replica")


def test_a_resume_link_opened_at_once_elsewhere_is_found_while_the_replicas_lag(
    client, replication
):
    """A response started a moment ago is not on a lagging replica yet: its resume link, opened
    in another browser (no pin), is looked up again on the primary instead of a 404."""
    seeded_survey(replication)
    replication.pause_replay()
    try:
        page_url = start(client)
        other = https_client()
        with queries_by_alias() as queries:
            resumed = other.get(page_url.replace("/p/1/", "/"))
        assert resumed.status_code == 302, resumed.status_code
        assert resumed["Location"] == page_url
        token_reads = {
            alias: sum('FROM "surveys_response"' in sql for sql in queries[alias])
            for alias in queries
        }
        assert token_reads[PRIMARY] == 1, token_reads
        assert sum(token_reads.values()) == (2 if REPLICAS else 1), token_reads
    finally:
        replication.resume_replay()


def test_the_read_your_writes_cookie_is_signed(client, replication):
    seeded_survey(replication)
    start(client)
    cookie = client.cookies[COOKIE]
    assert cookie["httponly"]
    assert cookie["secure"]
    assert _floor_seen(cookie.value) is not None
    assert _floor_seen("0/0") is None, "a forged, unsigned position must be ignored"


def _through_middleware(view, cookie=None):
    request = RequestFactory().get("/", secure=True)
    if cookie is not None:
        request.COOKIES[COOKIE] = cookie
    return ReadYourWritesMiddleware(view)(request)


def _floor_seen(cookie):
    """The WAL floor the router works with for a request that carries `cookie`."""
    seen = []

    def view(request):
        seen.append(state.current().floor)
        return HttpResponse()

    _through_middleware(view, cookie)
    return seen[0]


# --- Several replicas at different replay positions (statuses injected, no servers) ------------


class InjectedPool(ReplicaPool):
    """A ReplicaPool whose status queries return rows the test sets, on a clock it moves."""

    def __init__(self, aliases, *, max_lag_seconds=10, max_lag_bytes=1 << 20):
        self.now = 1000.0
        self.rows = {}
        self.asked = []  # the aliases probed, in order
        super().__init__(
            aliases,
            status_ttl=0,
            retry_seconds=5,
            max_lag_seconds=max_lag_seconds,
            max_lag_bytes=max_lag_bytes,
            clock=lambda: self.now,
        )
        self.primary_row()

    def primary_row(self, *, position="0/5000", timeline=1, lost=()):
        walfile = f"{timeline:08X}{0:08X}{1:08X}"
        self.rows[PRIMARY] = (False, position, walfile, "7", list(lost))

    def replica_row(self, alias, replay, *, age=0.0, system="7", receiver="streaming", tli=1):
        """`receiver`: its status; None without a receiver; "hidden" without pg_read_all_stats."""
        pid = None if receiver is None else 4242
        status = None if receiver in (None, "hidden") else receiver
        self.rows[alias] = (True, replay, age, system, pid, status, tli, f"slot_{alias}")

    def _fetch(self, alias, sql):
        self.asked.append(alias)
        row = self.rows[alias]
        if isinstance(row, Exception):
            raise row
        return row


def test_a_pinned_client_never_reads_from_a_lagging_replica():
    fake = InjectedPool(["replica_db2", "replica_db3"])
    fake.replica_row("replica_db2", "0/5000")
    fake.replica_row("replica_db3", "0/3000")
    floor = lsn.parse("0/4000")
    assert {fake.choose(floor) for _ in range(10)} == {"replica_db2"}
    assert {fake.choose() for _ in range(10)} == {"replica_db2", "replica_db3"}
    fake.replica_row("replica_db3", "0/4000")
    assert {fake.choose(floor) for _ in range(10)} == {"replica_db2", "replica_db3"}
    fake.replica_row("replica_db2", "0/3FFF")
    fake.replica_row("replica_db3", "0/3FFF")
    assert fake.choose(floor) is None, "no replica has the write: the primary serves it"


def test_the_pin_is_kept_while_another_replica_lags(monkeypatch):
    from routing.router import PinningReplicaRouter

    fake = InjectedPool(["replica_db2", "replica_db3"])
    fake.replica_row("replica_db2", "FFFF/0")
    fake.replica_row("replica_db3", "0/1")
    monkeypatch.setattr("routing.router.pool", lambda: fake)
    router = PinningReplicaRouter()

    def writes(request):
        router.db_for_write(Survey)
        return HttpResponse()

    routed = []

    def reads(request):
        routed.extend(router.db_for_read(Survey) for _ in range(4))
        return HttpResponse()

    pin = _through_middleware(writes).cookies[COOKIE].value
    response = _through_middleware(reads, pin)
    assert routed == ["replica_db2"] * 4
    assert COOKIE not in response.cookies, "a read must neither drop nor renew the pin"


# --- Health: streaming state and the primary's identity (statuses injected) ---------------------


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"receiver": None}, "its WAL receiver is not running"),
        ({"receiver": "starting"}, "its WAL receiver is starting, not streaming"),
        (
            {"receiver": "hidden"},
            "the app's role cannot read pg_stat_wal_receiver: grant it pg_read_all_stats",
        ),
        ({"system": "8"}, "it is a copy of system 8, not 7"),
        ({"tli": 2}, "it follows timeline 2, the primary is on 1"),
    ],
)
def test_a_replica_that_does_not_stream_from_this_primary_is_skipped(row, reason):
    fake = InjectedPool(["replica_db2"])
    fake.replica_row("replica_db2", "0/5000", **row)
    status = fake.status("replica_db2")
    assert (status.usable, status.reason) == (False, reason)
    assert fake.choose() is None


def test_a_replica_whose_slot_the_primary_invalidated_is_skipped():
    fake = InjectedPool(["replica_db2"])
    fake.replica_row("replica_db2", "0/5000")
    assert fake.choose() == "replica_db2"
    fake.primary_row(lost=["slot_replica_db2"])
    assert fake.choose() is None
    assert fake.status("replica_db2").reason == (
        "the primary invalidated its replication slot slot_replica_db2"
    )


def test_a_fresh_pool_knows_how_far_behind_a_replica_is():
    """As after a worker recycle: the primary's position comes from the probe, not from history."""
    fake = InjectedPool(["replica_db2"], max_lag_bytes=1000)
    fake.primary_row(position="0/100000")
    fake.replica_row("replica_db2", "0/1000")
    status = fake.status("replica_db2")
    assert not status.usable
    assert status.behind_bytes == 0x100000 - 0x1000
    assert "bytes behind" in status.reason


def test_a_fresh_pool_bounds_an_unknown_lag_by_the_last_replayed_transaction():
    fake = InjectedPool(["replica_db2"])
    fake.primary_row(position="0/6000")
    fake.replica_row("replica_db2", "0/5000", age=30)
    assert fake.status("replica_db2").reason == "replay lags 30.0s > 10s"


def test_the_lag_is_how_long_the_primary_has_been_ahead_of_the_replica():
    fake = InjectedPool(["replica_db2"])
    # Current, after an hour without writes: the age of its last transaction is no lag.
    fake.replica_row("replica_db2", "0/5000", age=3600)
    assert fake.status("replica_db2").lag_seconds == 0
    fake.primary_row(position="0/6000")
    fake.now += 1
    assert fake.choose() == "replica_db2"
    fake.now += 10.5
    status = fake.status("replica_db2")
    assert status.lag_seconds == 10.5
    assert not status.usable


def test_a_failed_primary_probe_keeps_the_replica_checks():
    """A probe of the primary that fails (a pgbouncer wait under load) opens no gate."""
    fake = InjectedPool(["replica_db2", "replica_db3"])
    fake.replica_row("replica_db2", "0/5000")
    fake.replica_row("replica_db3", "0/5000")
    assert fake.choose() is not None  # the primary has been seen: position 0/5000, timeline 1
    fake.rows[PRIMARY] = OperationalError("query_wait_timeout")
    fake.now += 1
    fake.replica_row("replica_db3", "0/5000", receiver=None)
    assert {fake.choose() for _ in range(10)} == {"replica_db2"}, "db3 stopped streaming"
    fake.replica_row("replica_db2", "0/5000", tli=2)
    assert fake.choose() is None, "judged against the timeline last seen on the primary"
    assert fake.status("replica_db3").reason == "its WAL receiver is not running"


@needs_two_replicas  # a tripped replica's connection is closed: its alias must exist
def test_one_failed_probe_per_read_then_the_other_replicas_are_passed_over():
    """A dead replica costs a read one pgbouncer wait, not one per replica asked in turn."""
    fake = InjectedPool(["replica_db2", "replica_db3"])
    fake.rows["replica_db2"] = OperationalError("query_wait_timeout")
    fake.replica_row("replica_db3", "0/5000")
    assert fake.choose() is None, "db2 failed; db3's status is stale, so the primary reads"
    assert fake.asked == [PRIMARY, "replica_db2"]
    assert fake.choose() == "replica_db3", "the next read asks db3 (db2's breaker is open)"
    assert fake.asked[2:] == [PRIMARY, "replica_db3"]


@needs_two_replicas
def test_a_host_cut_off_from_every_server_gives_up_after_the_primary_and_one_replica():
    """Primary and replica probes both failing is a web host cut off from the database: the read
    gives up at once instead of waiting on every other replica and then on the primary."""
    fake = InjectedPool(["replica_db2", "replica_db3"])
    for alias in (PRIMARY, "replica_db2", "replica_db3"):
        fake.rows[alias] = OperationalError("query_wait_timeout")
    with pytest.raises(DatabaseUnreachable, match="neither the primary nor a replica"):
        fake.choose()
    assert fake.asked == [PRIMARY, "replica_db2"]
    fake.now += 1  # within the breakers: db3 is asked (it never was), the primary is not
    with pytest.raises(DatabaseUnreachable, match="replica_db3"):
        fake.choose()
    assert fake.asked[2:] == ["replica_db3"]
    fake.now += 1  # every breaker open: nothing is asked, and the read goes to the primary
    assert fake.choose() is None
    assert fake.asked[3:] == []


@needs_a_replica
def test_a_read_that_finds_no_server_answers_503_with_retry_after(client, replication, monkeypatch):
    definition = seeded_survey(replication)
    page_url = start(client)
    fake = InjectedPool(["replica_db2"])
    for alias in (PRIMARY, "replica_db2"):
        fake.rows[alias] = OperationalError("query_wait_timeout")
    monkeypatch.setattr("routing.router.pool", lambda: fake)
    client.cookies.pop(COOKIE, None)  # unpinned: its reads would go to a replica
    response = client.get(page_url)
    assert response.status_code == 503
    assert response["Retry-After"]
    assert definition.page(1).questions[0].text not in response.content.decode()


# --- Failing replicas, with the real servers ----------------------------------------------------


def _taker_without_pin(client, replication):
    """A taker on page 1 whose writes the replicas have, so its reads go to a replica."""
    definition = seeded_survey(replication)
    page_url = start(client)
    replication.wait_for_replay()
    client.cookies.pop(COOKIE)
    return definition, page_url


def test_stopped_replicas_make_reads_fall_back_without_error(client, replication, caplog):
    definition, page_url = _taker_without_pin(client, replication)
    for node in replication.replicas:
        node.stop()
    caplog.set_level(logging.WARNING, logger="tally.routing")
    pool().retry_seconds = 60  # however slow the machine, the breaker stays open for the test
    for _ in range(5):
        with queries_by_alias() as queries:
            response = client.get(page_url)
        assert response.status_code == 200
        assert definition.page(1).questions[0].text in response.content.decode()
        assert queries[PRIMARY], "the taker's answers should be read from the primary"
    failures = [r for r in caplog.records if "unavailable" in r.getMessage()]
    # The circuit breaker: one failed attempt per replica, not one per request.
    assert min(1, len(REPLICAS)) <= len(failures) <= len(REPLICAS)


@needs_a_replica
def test_a_replica_that_dies_mid_request_is_retried_on_the_primary(client, replication):
    definition, page_url = _taker_without_pin(client, replication)
    pool().status_ttl = 60  # the replicas were just seen healthy and stay trusted
    assert client.get(page_url).status_code == 200
    for node in replication.replicas:
        node.stop()
    with queries_by_alias() as queries:
        response = client.get(page_url)
    assert response.status_code == 200
    assert definition.page(1).questions[0].text in response.content.decode()
    assert queries[PRIMARY]


@needs_a_replica
def test_a_paused_replica_falls_behind_the_primary_and_is_skipped(replication):
    lagging = ReplicaPool(
        REPLICAS, status_ttl=0, retry_seconds=1, max_lag_seconds=60, max_lag_bytes=0
    )
    wait_for(lambda: lagging.choose() in REPLICAS, timeout=5, what="a replica in rotation")
    replication.pause_replay()
    Survey.objects.create(slug="s", title="S")
    assert lagging.choose() is None
    assert all("bytes behind" in lagging.status(alias).reason for alias in REPLICAS)


@needs_two_replicas
def test_a_pinned_client_skips_the_replica_that_has_not_replayed_its_write(client, replication):
    definition = seeded_survey(replication)
    page_url = start(client)
    current, lagging = replication.replicas[:2]
    replication.pause_replay(lagging)
    post_page(client, page_url, valid_answers(definition.page(1), variant=4))
    pin = client.cookies[COOKIE].value
    replication.wait_for_replay(node=current)
    served = []

    def read():
        with queries_by_alias() as queries:
            assert "Answer 4 to" in client.get(page_url).content.decode()
        served.extend(alias for alias in queries if _answer_reads(queries, alias))
        assert client.cookies[COOKIE].value == pin, "the pin must be kept while a replica lags"
        return served.count(f"replica_{current.name}") >= 3

    # The primary serves until this process sees the current replica past the pin (one TTL).
    wait_for(read, timeout=5, what="the pinned client to read from the current replica")
    assert f"replica_{lagging.name}" not in served


@needs_a_replica
def test_a_fresh_pool_skips_a_replica_whose_wal_receiver_stopped(replication):
    """A recycled worker must not take a replica that stopped streaming for a current one."""
    node = replication.replica
    alias = f"replica_{node.name}"
    replication.cut_streaming(node)
    try:
        Survey.objects.create(slug="s", title="S")
        fresh = ReplicaPool(
            REPLICAS, status_ttl=60, retry_seconds=1, max_lag_seconds=10, max_lag_bytes=1 << 24
        )
        assert alias not in {fresh.choose() for _ in range(2 * len(REPLICAS))}
        status = fresh.status(alias)
        assert (status.usable, status.reason) == (False, "its WAL receiver is not running")
    finally:
        replication.heal_streaming(node)


def _replica_health(client, *, ok):
    """Wait until /readyz reports every replica ok (or every one not ok); returns its report."""

    reports = []

    def report():
        reports.append(client.get("/readyz").json()["replicas"])
        return all(r["ok"] is ok for r in reports[-1].values())

    wait_for(report, timeout=5, what=f"/readyz to report every replica ok={ok}")
    return reports[-1]


def test_reads_fall_back_to_the_primary_while_replicas_stop_streaming(client, replication):
    """Issue 9's story: a replica whose WAL receiver is gone is skipped, then comes back."""
    definition = seeded_survey(replication)
    page_url = start(client)
    # Another browser with the resume link: nothing pins its reads, as with the writer once its
    # pin has expired.
    other = https_client()
    for node in replication.replicas:
        replication.cut_streaming(node)
    try:
        health = _replica_health(client, ok=False)
        assert sorted(health) == sorted(REPLICAS)
        assert all(r["reason"] == "its WAL receiver is not running" for r in health.values())

        answers = valid_answers(definition.page(1), variant=3)
        assert post_page(client, page_url, answers).status_code == 302
        texts = [value for value in answers.values() if str(value).startswith("Answer 3 to")]
        assert texts
        for reader in (client, other):
            with queries_by_alias() as queries:
                page = reader.get(page_url).content.decode()
            assert all(text in page for text in texts), "the taker's answers must show"
            assert _answer_reads(queries, PRIMARY) == 1
            assert replica_reads(queries) == 0
    finally:
        for node in replication.replicas:
            replication.heal_streaming(node)
    replication.wait_for_replay()
    assert sorted(_replica_health(client, ok=True)) == sorted(REPLICAS)

    def other_reads_from_a_reader():
        with queries_by_alias() as queries:
            other.get(page_url)
        return sum(_answer_reads(queries, alias) for alias in READERS)

    wait_for(other_reads_from_a_reader, timeout=5, what="the replicas back in rotation")


def test_a_server_that_is_not_in_recovery_is_not_used_as_a_replica():
    connections.settings["not_a_replica"] = dict(connections.settings[PRIMARY])
    try:
        impostor = ReplicaPool(
            ["not_a_replica"], status_ttl=0, retry_seconds=1, max_lag_seconds=60, max_lag_bytes=1
        )
        assert impostor.choose() is None
    finally:
        connections["not_a_replica"].close()
        del connections.settings["not_a_replica"]


@pytest.mark.parametrize("text", ["", "0/0/0", "zz/1", "123456789/0", None, 42])
def test_malformed_wal_positions_are_rejected(text):
    assert lsn.parse(text) is None


def test_wal_positions_round_trip():
    assert lsn.parse("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert lsn.format_lsn(lsn.parse("16/B374D848")) == "16/B374D848"
    assert lsn.parse("0/10") < lsn.parse("1/0")
