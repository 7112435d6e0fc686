"""Liveness and readiness endpoints."""

import pytest
from django.conf import settings

from routing.replicas import ReplicaPool
from tally import release


def test_healthz_touches_no_backend(client, replication, bring_back):
    for node in (*replication.replicas, replication.primary):
        node.stop()
    try:
        response = client.get("/healthz")
    finally:
        bring_back(replication.primary, *replication.replicas)
    assert response.status_code == 200
    assert response.content == b"ok dev\n"  # the release: the tests run outside a release


def test_healthz_is_served_over_plain_http_for_local_probes():
    from django.test import Client

    assert Client().get("/healthz").status_code == 200
    assert Client().get("/").status_code == 301  # everything else redirects to HTTPS


def test_readyz_reports_every_backend(client):
    body = client.get("/readyz").json()
    assert body["ready"] is True
    assert body["release"] == "dev"
    assert body["primary"] == {"ok": True}
    assert sorted(body["replicas"]) == sorted(settings.TALLY_REPLICA_ALIASES)
    for replica in body["replicas"].values():
        assert replica["ok"] is True
        assert replica["reason"] is None
        assert 0 <= replica["lag_seconds"] < 1
        assert replica["replay_lsn_behind_bytes"] >= 0
    assert body["cache"] == {"ok": True}
    assert body["sessions"] == {"ok": True}


def test_readyz_is_503_when_the_primary_is_down(client, replication, bring_back, monkeypatch):
    probes = []
    refresh = ReplicaPool._refresh_if_stale
    monkeypatch.setattr(
        ReplicaPool,
        "_refresh_if_stale",
        lambda pool, replica: probes.append(replica.alias) or refresh(pool, replica),
    )
    replication.primary.stop()
    try:
        response = client.get("/readyz")
    finally:
        bring_back(replication.primary)
    assert response.status_code == 503
    assert response.json()["primary"]["ok"] is False
    # Not ready whatever the replicas say: they are reported as last seen, not waited for.
    assert probes == []
    assert all(r["as_last_seen"] for r in response.json()["replicas"].values())


def test_readyz_reports_down_replicas_but_stays_ready(client, replication):
    for node in replication.replicas:
        node.stop()
    response = client.get("/readyz")
    assert response.status_code == 200
    replicas = response.json()["replicas"]
    assert sorted(replicas) == sorted(settings.TALLY_REPLICA_ALIASES)
    for replica in replicas.values():
        assert replica["ok"] is False
        assert replica["reason"].startswith("OperationalError"), replica


def test_readyz_says_why_a_replica_is_out_and_keeps_the_others(client, replication):
    """Only the replica that stopped streaming is out: the others stay in rotation."""
    if not replication.replicas:
        assert client.get("/readyz").json()["replicas"] == {}
        return
    node = replication.replica
    replication.cut_streaming(node)
    try:
        replicas = client.get("/readyz").json()["replicas"]
    finally:
        replication.heal_streaming(node)
    out = replicas.pop(f"replica_{node.name}")
    assert out["ok"] is False
    assert out["reason"] == "its WAL receiver is not running"
    assert all(replica["ok"] for replica in replicas.values())


@pytest.mark.parametrize(("alias", "status"), [("sessions", 503), ("default", 200)])
def test_readyz_depends_on_the_session_store_not_the_cache(client, redis_servers, alias, status):
    server = redis_servers.sessions if alias == "sessions" else redis_servers.cache
    server.stop()
    try:
        response = client.get("/readyz")
    finally:
        server.start()
    assert response.status_code == status
    key = "sessions" if alias == "sessions" else "cache"
    assert response.json()[key]["ok"] is False


def test_readyz_without_a_cache_and_with_sessions_in_the_database(client):
    """make bench's naive deployment: no cache to check, sessions stored by the primary."""
    from django.test import override_settings

    naive = {
        "CACHES": {
            **settings.CACHES,
            "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
        },
        "SESSION_ENGINE": "django.contrib.sessions.backends.db",
    }
    with override_settings(**naive):
        response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["cache"] == {"ok": True, "off": True}
    assert body["sessions"] == {"ok": True, "store": "database"}


def test_every_response_names_its_release(client, monkeypatch):
    monkeypatch.setenv("TALLY_RELEASE", "abc123def456")
    from django.test import Client

    for path in ("/healthz", "/", "/s/no-such-survey/"):  # a page, a redirect, a 404
        response = Client().get(path, secure=True)
        assert response[release.HEADER] == "abc123def456", path
    assert Client().get("/healthz").content == b"ok abc123def456\n"


def test_the_release_is_the_directory_of_the_interpreters_venv(monkeypatch):
    monkeypatch.delenv("TALLY_RELEASE", raising=False)
    assert release.current("/opt/tally/releases/0123456789ab/venv") == "0123456789ab"
    assert release.current("/work/tally/.venv") == "dev"
