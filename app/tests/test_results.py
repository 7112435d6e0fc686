"""The results page: one rebuild per survey at a time, a stale copy meanwhile, replicas only."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.core.cache import cache, caches

from routing import PRIMARY
from surveys import selectors
from tests.helpers import post_page, queries_by_alias, seeded_survey, start, valid_answers


@pytest.fixture
def slow_compute(monkeypatch):
    """Replace the aggregate with a stand-in that counts how many run at once, and that runs
    until `release` is set (at once, unless a test clears it first)."""
    state = {"calls": 0, "running": 0, "most": 0, "release": threading.Event()}
    state["release"].set()
    lock = threading.Lock()

    def compute(definition):
        with lock:
            state["calls"] += 1
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
        released = state["release"].wait(timeout=10)
        with lock:
            state["running"] -= 1
        assert released, "the test never released the rebuild"
        return {"started": state["calls"], "completed": 0, "questions": []}

    monkeypatch.setattr(selectors, "_survey_results_compute", compute)
    return state


def _key(definition):
    return selectors._RESULTS_KEY.format(survey_id=definition.id)


def test_a_cold_cache_under_load_has_one_rebuild_in_flight(replication, slow_compute, monkeypatch):
    definition = seeded_survey(replication, pages=1, questions_per_page=2)
    cache.delete(_key(definition))
    # The rebuild runs until every one of the 8 requests has asked for the lock, so all of
    # them miss while it is in flight.
    # Each thread has its own cache client, so the count goes on the backend's class.
    backend = type(caches["default"])
    asked, add = set(), backend.add

    def counting_add(self, key, *args, **kwargs):
        if key.endswith(":rebuilding"):
            asked.add(threading.get_ident())
            if len(asked) == 8:
                slow_compute["release"].set()
        return add(self, key, *args, **kwargs)

    slow_compute["release"].clear()
    monkeypatch.setattr(backend, "add", counting_add)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: selectors.survey_results(definition), range(8)))
    assert len(asked) == 8
    assert slow_compute["calls"] == 1
    assert slow_compute["most"] == 1
    assert all(answer == answers[0] for answer in answers)  # every waiter got the one rebuild


def test_a_stale_copy_is_served_while_another_request_rebuilds(replication, slow_compute):
    definition = seeded_survey(replication, pages=1, questions_per_page=2)
    stale = {"started": 7, "completed": 7, "questions": []}
    cache.set(_key(definition), {"results": stale, "fresh_until": time.time() - 1}, 60)
    cache.set(f"{_key(definition)}:rebuilding", 1, 30)  # another worker is on it
    assert selectors.survey_results(definition) == stale
    assert slow_compute["calls"] == 0
    cache.delete(f"{_key(definition)}:rebuilding")
    # Once no one holds the lock, the next request past freshness rebuilds, and the new copy
    # is fresh for the others.
    assert selectors.survey_results(definition)["started"] == 1
    assert selectors.survey_results(definition)["started"] == 1
    assert slow_compute["calls"] == 1


def test_a_costly_rebuild_keeps_its_copy_fresh_longer(replication, slow_compute, monkeypatch):
    definition = seeded_survey(replication, pages=1, questions_per_page=2)
    cache.delete(_key(definition))
    clock = {"now": 1000.0}
    monkeypatch.setattr(selectors.time, "monotonic", lambda: clock["now"])
    rebuild = slow_compute["release"]
    monkeypatch.setattr(rebuild, "wait", lambda timeout: clock.update(now=clock["now"] + 4) or True)
    selectors.survey_results(definition)  # a rebuild that took 4 s
    fresh_for = cache.get(_key(definition))["fresh_until"] - time.time()
    assert 4 * selectors._RESULTS_COST_FACTOR - 5 < fresh_for <= 4 * selectors._RESULTS_COST_FACTOR
    assert fresh_for > settings.TALLY_RESULTS_CACHE_SECONDS
    assert cache.ttl(_key(definition)) >= fresh_for  # the stale copy outlives its freshness


def test_a_waiter_rebuilds_itself_when_the_lock_holder_vanished(replication, slow_compute):
    definition = seeded_survey(replication, pages=1, questions_per_page=2)
    cache.delete(_key(definition))
    lock = f"{_key(definition)}:rebuilding"
    # A worker took the lock and died before storing anything: the lock expires by itself
    # (here after 1 s, within the waiter's 5 s), and the waiter takes it.
    cache.set(lock, 1, 1)
    assert selectors.survey_results(definition)["started"] == 1
    assert cache.get(lock) is None  # released after the rebuild
    assert slow_compute["calls"] == 1


def test_a_rebuild_that_outlasts_the_wait_gets_a_page_that_reloads_itself(
    client, replication, slow_compute, monkeypatch
):
    # Not a 503: nginx would count it against a web host that is fine.
    definition = seeded_survey(replication, pages=1, questions_per_page=2)
    cache.delete(_key(definition))
    cache.set(f"{_key(definition)}:rebuilding", 1, 30)
    monkeypatch.setattr(selectors, "_RESULTS_WAIT_SECONDS", 0.2)
    response = client.get("/s/climate/results/")
    assert response.status_code == 200
    assert response["Refresh"] == "2"
    assert response["Cache-Control"] == "no-store"
    assert "being counted" in response.content.decode()
    assert slow_compute["calls"] == 0


def test_an_unreachable_cache_costs_one_computation_per_request_and_no_waiting(
    replication, slow_compute, monkeypatch
):
    # django-redis ignores the cache's errors (IGNORE_EXCEPTIONS): get answers None, and add
    # None too, not False, since no one holds a lock that cannot be taken.
    definition = seeded_survey(replication, pages=1, questions_per_page=2)
    monkeypatch.setattr(cache, "get", lambda *args, **kwargs: None)
    monkeypatch.setattr(cache, "add", lambda *args, **kwargs: None)
    started = time.monotonic()
    assert [selectors.survey_results(definition)["started"] for _ in range(3)] == [1, 2, 3]
    assert time.monotonic() - started < selectors._RESULTS_WAIT_SECONDS


@pytest.mark.replicas(1)
def test_a_client_who_just_wrote_still_reads_results_from_a_replica(client, replication):
    definition = seeded_survey(replication, pages=2, questions_per_page=4)  # both choice kinds
    url = start(client)
    post_page(client, url, valid_answers(definition.page(1)))  # pins this client to the primary
    replication.wait_for_replay()
    cache.delete(_key(definition))
    with queries_by_alias() as queries:
        response = client.get("/s/climate/results/")
    assert response.status_code == 200
    # The router's status probe reads the primary's position; the aggregate reads nothing there.
    assert not [sql for sql in queries[PRIMARY] if "pg_is_in_recovery" not in sql]
    body = response.content.decode()
    assert "1 started" in body
    # Each choice's count is drawn as a bar: a <meter> out of the question's answers.
    assert '<meter min="0" max="1" value="1">1 of 1</meter>' in body


def test_a_process_renders_a_surveys_counts_once_per_rebuild(client, replication):
    definition = seeded_survey(replication, pages=1, questions_per_page=4)
    start(client)
    replication.wait_for_replay()

    def templates():
        response = client.get("/s/climate/results/")
        assert response.status_code == 200
        return [template.name for template in response.templates], response.content.decode()

    counted = ["surveys/results_counts.html", "surveys/results.html", "base.html"]
    names, first = templates()
    assert names == counted  # the first view renders the counts...
    names, again = templates()
    assert names == ["surveys/results.html", "base.html"]  # ... later ones reuse them
    assert again == first
    assert "1 started, 0 completed" in again
    # A rebuild with other counts is rendered afresh.
    start(client)
    replication.wait_for_replay()
    cache.delete(_key(definition))
    names, body = templates()
    assert names == counted
    assert "2 started, 0 completed" in body
