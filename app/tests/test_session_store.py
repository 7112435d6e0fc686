"""The session store restarting or full: a wait or a clear 503, never a 500 or a lost write."""

import threading
import uuid

import redis
from django.conf import settings
from django.test import override_settings

from surveys.models import Answer, Response
from tests.conftest import https_client
from tests.helpers import csrf_token, seeded_survey, start, valid_answers


def test_a_restarting_session_store_is_waited_for_and_keeps_the_session(
    client, replication, redis_servers
):
    definition = seeded_survey(replication)
    url = start(client)
    assert client.get(url).status_code == 200
    sessions = redis_servers.sessions
    sessions.stop()
    back = threading.Timer(0.5, sessions.start)
    back.start()
    try:
        # The client retries while the store is away, then finds the session (AOF) again.
        page = client.get(url)
    finally:
        back.join()
    assert page.status_code == 200
    data = {**valid_answers(definition.page(1)), "csrfmiddlewaretoken": csrf_token(page)}
    saved = client.post(url, data)
    assert saved.status_code == 302
    assert Answer.objects.count() == len(definition.page(1).questions)


def test_a_full_session_store_gives_503_saying_the_page_was_saved(
    client, replication, redis_servers
):
    definition = seeded_survey(replication)
    url = start(client)
    page = client.get(url)
    data = {**valid_answers(definition.page(1)), "csrfmiddlewaretoken": csrf_token(page)}
    store = redis.Redis.from_url(redis_servers.sessions.url())
    limit = store.config_get("maxmemory")["maxmemory"]
    store.config_set("maxmemory", 1)  # noeviction: every write is refused with OOM
    try:
        response = client.post(url, data)
    finally:
        store.config_set("maxmemory", limit)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "was saved" in response.content.decode()
    # The answers were committed before the session could not be saved, and only once.
    assert Answer.objects.count() == len(definition.page(1).questions)
    again = client.post(url, data)
    assert again.status_code == 302
    assert Answer.objects.count() == len(definition.page(1).questions)


def test_a_session_store_away_longer_than_the_wait_gives_503_saying_the_page_was_saved(
    client, replication, redis_servers
):
    """The session is only a copy of the taker's state: without it the app reads the
    response from the database, saves the page, and only then fails to save the session."""
    definition = seeded_survey(replication)
    url = start(client)
    page = client.get(url)
    data = {**valid_answers(definition.page(1)), "csrfmiddlewaretoken": csrf_token(page)}
    redis_servers.sessions.stop()
    try:
        response = client.post(url, data)
    finally:
        redis_servers.sessions.start()
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "was saved" in response.content.decode()
    assert Answer.objects.count() == len(definition.page(1).questions)
    assert client.post(url, data).status_code == 302
    assert Answer.objects.count() == len(definition.page(1).questions)


def _client_from(address):
    client = https_client()
    client.defaults["HTTP_X_TALLY_CLIENT"] = address  # as nginx sets it
    return client


def _start_status(client):
    intro = client.get("/s/climate/")
    return client.post("/s/climate/", {"csrfmiddlewaretoken": csrf_token(intro)})


@override_settings(TALLY_NEW_SESSIONS_PER_CLIENT_HOUR=2)
def test_one_client_starts_at_most_its_hourly_sessions(replication):
    seeded_survey(replication)
    address = f"test-{uuid.uuid4()}"  # a fresh counter, whatever ran before in this hour
    first = _client_from(address)
    assert _start_status(first).status_code == 302
    assert _start_status(_client_from(address)).status_code == 302
    refused = _start_status(_client_from(address))
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert "at most 2 surveys an hour" in refused.content.decode()
    assert settings.SESSION_COOKIE_NAME not in refused.cookies
    assert Response.objects.count() == 2  # the refused POST wrote nothing
    # A client with a session is not starting one; other addresses and exempt networks (no
    # address from nginx) have their own counts.
    assert _start_status(first).status_code == 302
    assert _start_status(_client_from(f"test-{uuid.uuid4()}")).status_code == 302
    assert _start_status(https_client()).status_code == 302
    assert Response.objects.count() == 5
