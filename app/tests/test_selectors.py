"""Reads: the cached survey definition is never rebuilt from a replica that lags the author."""

import pytest
from django.core.cache import cache
from django.utils.html import escape

from routing.replicas import pool
from surveys import selectors
from tests.helpers import queries_by_alias, seeded_survey, start


@pytest.mark.replicas(1)  # without replicas every read is on the primary anyway
def test_a_cache_miss_rebuilds_the_definition_from_the_primary(client, replication):
    definition = seeded_survey(replication)
    question_id = definition.page(1).questions[0].id
    url = start(client)
    replication.wait_for_replay()
    pool().status_ttl = 60  # every replica was just seen current, and stays trusted
    assert pool().choose() is not None
    replication.pause_replay()
    # An author's change that no replica has replayed, and a cache that lost the definition.
    with replication.connect(replication.primary) as conn:
        conn.execute(
            "UPDATE surveys_question SET text = 'Changed a moment ago?' WHERE id = %s",
            [question_id],
        )
    cache.clear()
    assert "Changed a moment ago?" in client.get(url).content.decode()
    assert selectors.survey_definition("climate").page(1).questions[0].text == (
        "Changed a moment ago?"
    )


def test_page_positions_become_ordinals_whatever_numbers_the_author_used(replication):
    from surveys.models import Page

    seeded_survey(replication, pages=3, questions_per_page=2)
    for page in Page.objects.order_by("-position"):
        page.position *= 10
        page.save()
    cache.clear()
    definition = selectors.survey_definition("climate")
    assert [page.position for page in definition.pages] == [1, 2, 3]
    assert definition.page(2).title == Page.objects.get(position=20).title


def test_a_process_unpickles_a_definition_once_until_the_survey_changes(replication):
    from surveys import services

    definition = seeded_survey(replication)  # built on the cache's miss
    served = selectors.survey_definition("climate")  # from the cache
    assert served == definition
    # The same objects for every request while the cached definition is the same...
    assert selectors.survey_definition("climate") is served
    assert selectors.survey_definition("climate") is served
    question = definition.page(1).questions[0]
    with replication.connect(replication.primary) as conn:
        conn.execute("UPDATE surveys_question SET text = 'Reworded?' WHERE id = %s", [question.id])
    # ... and the new definition as soon as the cache has it (an author's change refreshes it).
    services.survey_definition_refresh(slug="climate")
    changed = selectors.survey_definition("climate")
    assert changed is not served
    assert changed.page(1).questions[0].text == "Reworded?"
    assert selectors.cached_definition("climate") == changed


def test_an_unknown_survey_is_remembered_as_unknown_without_asking_again(replication):
    with queries_by_alias() as queries:
        assert selectors.survey_definition("no-such-survey") is None
    assert sum(map(len, queries.values())) == 1  # the survey's row, not found
    with queries_by_alias() as queries:
        assert selectors.survey_definition("no-such-survey") is None
    assert sum(map(len, queries.values())) == 0


def test_a_cache_that_cannot_be_reached_costs_a_build_not_an_error(
    client, replication, redis_servers
):
    seeded_survey(replication)
    url = start(client)
    redis_servers.cache.stop()
    try:
        definition = selectors.survey_definition("climate")  # built from the primary
        page = client.get(url)
    finally:
        redis_servers.cache.start()
    assert definition.slug == "climate"
    assert page.status_code == 200
    assert escape(definition.page(1).questions[0].text) in page.content.decode()
