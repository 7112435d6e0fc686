"""The pinning read/write router: replicas for reads, the primary for writes and own writes."""

import logging

import pytest
from django.db import connections, transaction

from routing import PRIMARY, state
from routing.replicas import ReplicaPool, pool
from surveys.models import Response, Survey
from tests.conftest import https_client
from tests.helpers import post_page, queries_by_alias, seeded_survey, start, valid_answers

REPLICAS = ["replica1", "replica2"]


def _read_alias():
    return Survey.objects.all().db


def test_reads_go_to_a_replica_and_writes_to_the_primary():
    assert _read_alias() in REPLICAS
    survey = Survey.objects.create(slug="s", title="S")
    assert survey._state.db == PRIMARY


def test_reads_after_a_write_in_the_same_request_use_the_primary():
    Survey.objects.create(slug="s", title="S")
    assert _read_alias() == PRIMARY


def test_reads_inside_a_transaction_use_the_primary():
    with transaction.atomic(using=PRIMARY):
        assert _read_alias() == PRIMARY
    assert _read_alias() in REPLICAS


def test_replica_safe_models_read_from_a_replica_even_after_a_write():
    Survey.objects.create(slug="s", title="S")
    with state.replica_safe(Survey):
        assert _read_alias() in REPLICAS
        assert Response.objects.all().db == PRIMARY


def test_reads_are_spread_round_robin_over_healthy_replicas():
    seen = [_read_alias() for _ in range(4)]
    assert sorted(seen) == ["replica1", "replica1", "replica2", "replica2"]


def test_migrations_run_on_the_primary_only():
    from routing.router import PinningReplicaRouter

    router = PinningReplicaRouter()
    assert router.allow_migrate(PRIMARY, "surveys")
    assert not router.allow_migrate("replica1", "surveys")


def _answer_reads(queries, alias):
    return sum('FROM "surveys_answer"' in sql for sql in queries[alias])


def test_writer_reads_its_own_writes_while_the_replica_is_paused(client, replication):
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
    assert sum(_answer_reads(other_queries, alias) for alias in REPLICAS) == 1
    assert "Answer 2 to" not in other_view.content.decode(), "the replica should be stale"

    replication.resume_replay()
    replication.wait_for_replay()

    def writer_reads_from_replica():
        with queries_by_alias() as queries:
            view = client.get(page_url)
        return "Answer 2 to" in view.content.decode() and not _answer_reads(queries, PRIMARY)

    from tests.servers import wait_for

    wait_for(writer_reads_from_replica, timeout=5, what="the writer to read from the replica")


def test_the_read_your_writes_cookie_is_signed(client, replication):
    seeded_survey(replication)
    start(client)
    cookie = client.cookies["tally_wal"]
    assert cookie["httponly"]
    assert cookie["secure"]
    client.cookies["tally_wal"] = "0/0"  # a forged, unsigned position is ignored
    with queries_by_alias() as queries:
        client.get("/s/climate/")
    assert not queries[PRIMARY]


def _taker_without_pin(client, replication):
    """A taker on page 1 whose writes the replica has, so its reads go to a replica."""
    definition = seeded_survey(replication)
    page_url = start(client)
    replication.wait_for_replay()
    client.cookies.pop("tally_wal")
    return definition, page_url


def test_a_stopped_replica_makes_reads_fall_back_without_error(client, replication, caplog):
    definition, page_url = _taker_without_pin(client, replication)
    replication.replica.stop()
    caplog.set_level(logging.WARNING, logger="tally.routing")
    for _ in range(5):
        with queries_by_alias() as queries:
            response = client.get(page_url)
        assert response.status_code == 200
        assert definition.page(1).questions[0].text in response.content.decode()
        assert queries[PRIMARY], "the taker's answers should be read from the primary"
    failures = [r for r in caplog.records if "unavailable" in r.getMessage()]
    # The circuit breaker: one failed attempt per replica alias, not one per request.
    assert 1 <= len(failures) <= len(REPLICAS)


def test_a_replica_that_dies_mid_request_is_retried_on_the_primary(client, replication):
    definition, page_url = _taker_without_pin(client, replication)
    pool().status_ttl = 60  # both replicas were just seen healthy and stay trusted
    assert client.get(page_url).status_code == 200
    replication.replica.stop()
    with queries_by_alias() as queries:
        response = client.get(page_url)
    assert response.status_code == 200
    assert definition.page(1).questions[0].text in response.content.decode()
    assert queries[PRIMARY]


def test_a_lagging_replica_is_skipped(replication):
    lagging = ReplicaPool(
        REPLICAS, status_ttl=0, retry_seconds=1, max_lag_seconds=60, max_lag_bytes=0
    )
    assert lagging.choose() in REPLICAS
    replication.pause_replay()
    Survey.objects.create(slug="s", title="S")
    with connections[PRIMARY].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        from routing import lsn

        lagging.note_primary_lsn(lsn.parse(cursor.fetchone()[0]))
    assert lagging.choose() is None


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
    from routing import lsn

    assert lsn.parse(text) is None


def test_wal_positions_round_trip():
    from routing import lsn

    assert lsn.parse("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert lsn.format_lsn(lsn.parse("16/B374D848")) == "16/B374D848"
    assert lsn.parse("0/10") < lsn.parse("1/0")
