"""Taking a survey through the views: the full path, query budgets and bad input."""

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connections

from routing import PRIMARY
from surveys.models import Answer, Response
from tests.conftest import https_client
from tests.helpers import (
    admin_question_form,
    csrf_token,
    post_page,
    queries_by_alias,
    seeded_survey,
    start,
    valid_answers,
)

REPLICAS = settings.TALLY_REPLICA_ALIASES


def _total(queries, aliases):
    return sum(len(queries[alias]) for alias in aliases)


def _submit_review(client, url):
    """Open the review page at `url`, submit it, and return where it sends the taker (done)."""
    assert url.endswith("/review/"), url
    review = client.get(url)
    assert review.status_code == 200
    done = client.post(url, {"csrfmiddlewaretoken": csrf_token(review)})
    assert done.status_code == 302
    assert done["Location"].endswith("/done/")
    return done["Location"]


def test_a_survey_is_taken_to_completion(client, replication):
    definition = seeded_survey(replication)
    url = start(client)
    for position in range(1, definition.page_count + 1):
        assert url.endswith(f"/p/{position}/")
        response = post_page(client, url, valid_answers(definition.page(position)))
        assert response.status_code == 302, response.content.decode()[:500]
        url = response["Location"]
    assert "Thank you" in client.get(_submit_review(client, url)).content.decode()
    taker = Response.objects.get()
    assert taker.completed_at is not None
    assert Answer.objects.filter(response=taker).count() == 50
    replication.wait_for_replay()
    for replica in replication.replicas:
        with replication.connect(replica) as conn:
            count = conn.execute("SELECT count(*) FROM surveys_answer").fetchone()[0]
        assert count == 50, f"the answers should have streamed to {replica}"


def test_a_page_get_runs_one_query_when_the_definition_is_cached(client, replication):
    seeded_survey(replication)
    url = start(client)
    replication.wait_for_replay()
    # Warm: one GET per replica alias (reads go round robin), so each has its connection, with
    # the type lookups Django runs once per new connection, and the replica status is fresh.
    for _alias in settings.TALLY_REPLICA_ALIASES:
        client.get(url)
    with queries_by_alias() as queries:
        response = client.get(url)
    assert response.status_code == 200
    answer_reads = [sql for alias in queries for sql in queries[alias] if "surveys_answer" in sql]
    status_probes = [
        sql for alias in queries for sql in queries[alias] if "pg_is_in_recovery" in sql
    ]
    assert len(answer_reads) == 1
    assert _total(queries, queries) - len(status_probes) == 1, queries


def test_a_page_post_runs_two_statements_on_the_primary(client, replication):
    definition = seeded_survey(replication)
    url = start(client)
    page = client.get(url)
    data = {**valid_answers(definition.page(1)), "csrfmiddlewaretoken": csrf_token(page)}
    with queries_by_alias() as queries:
        response = client.post(url, data)
    assert response.status_code == 302
    # The page's save (one statement, its own transaction), then the WAL position after its
    # commit, for read-your-writes.
    assert len(queries[PRIMARY]) == 2, queries[PRIMARY]
    assert "pg_current_wal_lsn" in queries[PRIMARY][1]
    assert _total(queries, REPLICAS) == 0


def test_a_taker_can_go_back_and_change_answers(client, replication):
    definition = seeded_survey(replication)
    url = start(client)
    post_page(client, url, valid_answers(definition.page(1), variant=0))
    response = post_page(client, url, valid_answers(definition.page(1), variant=3))
    assert response.status_code == 302
    assert "Answer 3 to" in client.get(url).content.decode()
    assert Answer.objects.count() == 10


def test_a_resume_link_continues_in_a_new_session(client, replication):
    definition = seeded_survey(replication)
    url = start(client)
    post_page(client, url, valid_answers(definition.page(1)))
    resume = url.replace("/p/1/", "/")
    fresh = https_client()
    response = fresh.get(resume)
    assert response.status_code == 302
    assert response["Location"].endswith("/p/2/")
    page2 = fresh.get(response["Location"])
    assert page2.status_code == 200
    # GETs look the response up without storing a session: only POSTs, which nginx limits per
    # client, create sessions, so GETs of a resume link cannot fill the session store.
    assert settings.SESSION_COOKIE_NAME not in fresh.cookies
    saved = post_page(fresh, response["Location"], valid_answers(definition.page(2)))
    assert saved.status_code == 302
    assert settings.SESSION_COOKIE_NAME in fresh.cookies


def test_the_intro_offers_to_continue_an_unfinished_response(client, replication):
    seeded_survey(replication)
    url = start(client)
    token = url.split("/r/")[1].split("/")[0]
    assert f"/r/{token}/" in client.get("/s/climate/").content.decode()


def test_pages_cannot_be_skipped(client, replication):
    definition = seeded_survey(replication)
    url = start(client)
    page3 = url.replace("/p/1/", "/p/3/")
    assert client.get(page3)["Location"].endswith("/p/1/")
    intro = client.get(url)
    response = client.post(
        page3, {**valid_answers(definition.page(3)), "csrfmiddlewaretoken": csrf_token(intro)}
    )
    assert response.status_code == 409
    assert "earlier pages" in response.content.decode()
    assert not Answer.objects.exists()


def test_invalid_answers_get_400_with_the_errors_and_write_nothing(client, replication):
    definition = seeded_survey(replication)
    url = start(client)
    data = valid_answers(definition.page(1))
    scale = next(q for q in definition.page(1).questions if q.kind == "scale")
    data[scale.field_name] = "9"
    text = next(q for q in definition.page(1).questions if q.kind == "text")
    data[text.field_name] = "x" * 2001
    response = post_page(client, url, data)
    assert response.status_code == 400
    body = response.content.decode()
    assert "Please correct the answers" in body
    assert "Select a valid choice" in body
    assert "at most 2000 characters" in body
    assert not Answer.objects.exists()


def test_missing_required_answers_get_400(client, replication):
    seeded_survey(replication)
    url = start(client)
    response = post_page(client, url, {})
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()
    assert not Answer.objects.exists()


def test_a_nul_character_is_refused_not_a_500(client, replication):
    definition = seeded_survey(replication)
    url = start(client)
    data = valid_answers(definition.page(1))
    text = next(q for q in definition.page(1).questions if q.kind == "text")
    data[text.field_name] = "bad\x00byte"
    assert post_page(client, url, data).status_code == 400
    assert not Answer.objects.exists()


@pytest.mark.parametrize(
    "mutation", ["unknown_question", "unknown_choice", "other_questions_choice"]
)
def test_unknown_ids_get_404_and_write_nothing(client, replication, mutation):
    definition = seeded_survey(replication)
    url = start(client)
    page = definition.page(1)
    data = valid_answers(page)
    single = next(q for q in page.questions if q.kind == "single")
    if mutation == "unknown_question":
        data["q999999"] = "1"
    elif mutation == "unknown_choice":
        data[single.field_name] = "999999"
    else:
        other = next(q for q in definition.page(2).questions if q.kind == "single")
        data[single.field_name] = str(other.choices[0].id)
    assert post_page(client, url, data).status_code == 404
    assert not Answer.objects.exists()


@pytest.mark.parametrize(
    "path",
    [
        "/s/nope/",
        "/s/climate/r/AAAAAAAAAAAAAAAAAAAAAAAA/",
        "/s/climate/r/{token}/p/6/",
        "/s/climate/r/{token}/p/0/",
        "/s/nope/results/",
    ],
)
def test_unknown_surveys_responses_and_pages_get_404(client, replication, path):
    seeded_survey(replication)
    url = start(client)
    token = url.split("/r/")[1].split("/")[0]
    assert client.get(path.format(token=token)).status_code == 404


def test_a_response_of_another_survey_is_not_found(client, replication):
    seeded_survey(replication)
    seeded_survey(replication, slug="other", pages=1, questions_per_page=2)
    url = start(client)
    assert client.get(url.replace("/s/climate/", "/s/other/")).status_code == 404


def test_a_post_to_a_completed_response_is_refused_clearly(client, replication):
    definition = seeded_survey(replication, pages=1, questions_per_page=3)
    url = start(client)
    review_url = post_page(client, url, valid_answers(definition.page(1)))["Location"]
    review = client.get(review_url)
    client.post(review_url, {"csrfmiddlewaretoken": csrf_token(review)})
    before = list(Answer.objects.values_list("id", "updated_at").order_by("id"))
    data = {
        **valid_answers(definition.page(1), variant=1),
        "csrfmiddlewaretoken": csrf_token(review),
    }
    response = client.post(url, data)
    assert response.status_code == 409
    assert "already been submitted" in response.content.decode()
    assert list(Answer.objects.values_list("id", "updated_at").order_by("id")) == before
    # The same from another browser that only has the resume link: the database refuses it.
    other = https_client()
    other_page = other.get(url)
    assert other_page.status_code == 302
    assert other_page["Location"].endswith("/done/")


def test_completing_elsewhere_is_caught_by_the_database(client, replication):
    definition = seeded_survey(replication, pages=1, questions_per_page=3)
    url = start(client)
    review_url = post_page(client, url, valid_answers(definition.page(1)))["Location"]
    stale = https_client()
    stale.get(url.replace("/p/1/", "/"))
    stale_page = stale.get(url)  # this session still believes the response is open
    review = client.get(review_url)
    client.post(review_url, {"csrfmiddlewaretoken": csrf_token(review)})
    data = {
        **valid_answers(definition.page(1), variant=1),
        "csrfmiddlewaretoken": csrf_token(stale_page),
    }
    assert stale.post(url, data).status_code == 409


def test_a_body_over_the_limit_is_refused(client, replication):
    seeded_survey(replication)
    url = start(client)
    page = client.get(url)
    data = {"csrfmiddlewaretoken": csrf_token(page), "q1": "x" * (300 * 1024)}
    assert client.post(url, data).status_code == 400
    too_many = {"csrfmiddlewaretoken": csrf_token(page), **{f"f{i}": "1" for i in range(300)}}
    assert client.post(url, too_many).status_code == 400
    assert not Answer.objects.exists()


def test_posts_without_a_csrf_token_are_forbidden(client, replication):
    definition = seeded_survey(replication)
    url = start(client)
    assert client.post(url, valid_answers(definition.page(1))).status_code == 403
    assert not Answer.objects.exists()


def test_a_closed_survey_cannot_be_started(client, replication):
    from surveys import services
    from surveys.models import Survey

    seeded_survey(replication)
    token = csrf_token(client.get("/s/climate/"))  # the taker opened it before it closed
    Survey.objects.filter(slug="climate").update(is_open=False)
    services.survey_definition_refresh(slug="climate")
    assert "closed" in client.get("/s/climate/").content.decode()
    response = client.post("/s/climate/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 409
    assert not Response.objects.exists()


def test_results_are_read_from_a_replica_and_cached(client, replication):
    from surveys import demo
    from surveys.models import Survey

    seeded_survey(replication)
    demo.create_responses(Survey.objects.get(slug="climate"), 20)
    replication.wait_for_replay()
    with queries_by_alias() as queries:
        response = client.get("/s/climate/results/")
    assert response.status_code == 200
    assert "20 started" in response.content.decode()
    if REPLICAS:
        # The replica pool's status probe reads the primary's position; nothing else may.
        assert not [sql for sql in queries[PRIMARY] if "pg_is_in_recovery" not in sql]
        assert _total(queries, REPLICAS) >= 3
    else:  # without replicas the primary serves the aggregate
        assert len(queries[PRIMARY]) >= 3
    with queries_by_alias() as again:
        client.get("/s/climate/results/")
    assert _total(again, again) == 0


def test_results_count_choices_and_average_scales(client, replication):
    definition = seeded_survey(replication, pages=1, questions_per_page=4)
    for variant in (0, 1):
        taker = https_client()
        url = start(taker)
        post_page(taker, url, valid_answers(definition.page(1), variant=variant))
    replication.wait_for_replay()
    cache.clear()
    body = client.get("/s/climate/results/").content.decode()
    assert "2 started, 0 completed (0%)" in body
    assert "mean 1.50" in body  # scale answers 1 and 2


def test_survey_list_shows_open_surveys(client, replication):
    seeded_survey(replication)
    assert "School climate" in client.get("/").content.decode()


def test_the_definition_is_rebuilt_after_an_admin_edit(client, replication):
    from django.contrib.auth.models import User

    from surveys.models import Question

    definition = seeded_survey(replication)
    question = Question.objects.get(pk=definition.page(1).questions[0].id)
    User.objects.create_superuser("author", "a@example.com", "correct horse battery")
    admin = https_client()
    admin.force_login(User.objects.get(username="author"))
    edit_url, data = admin_question_form(admin, question, "A rewritten question?")
    response = admin.post(edit_url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    url = start(client)
    assert "A rewritten question?" in client.get(url).content.decode()


def test_a_page_post_while_the_primary_is_down_gets_503_and_saves_nothing(
    client, replication, bring_back
):
    definition = seeded_survey(replication)
    url = start(client)
    page = client.get(url)
    data = {**valid_answers(definition.page(1)), "csrfmiddlewaretoken": csrf_token(page)}
    replication.primary.stop()
    try:
        response = client.post(url, data)
    finally:
        bring_back(replication.primary)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "was not saved" in response.content.decode()
    assert not Answer.objects.exists()


@pytest.mark.parametrize("path", ["/", "/s/no-such-survey/"])
def test_every_response_tells_the_service_time(client, replication, path):
    seeded_survey(replication)
    response = client.get(path)
    name, _, duration = response["Server-Timing"].partition(";dur=")
    assert name == "app"
    assert 0 < float(duration) < 60_000


def test_a_survey_whose_author_deleted_a_middle_page_can_be_completed(client, replication):
    from surveys import services
    from surveys.models import Page

    seeded_survey(replication)
    Page.objects.get(survey__slug="climate", position=3).delete()
    definition = services.survey_definition_refresh(slug="climate")
    assert definition.page_count == 4
    url = start(client)
    for position in range(1, 5):
        assert url.endswith(f"/p/{position}/"), url
        page = client.get(url)
        assert f"Page {position} of 4" in page.content.decode()
        response = post_page(client, url, valid_answers(definition.page(position)))
        assert response.status_code == 302, response.content.decode()[:500]
        url = response["Location"]
    _submit_review(client, url)
    assert Response.objects.get().completed_at is not None
    assert Answer.objects.count() == 40


def test_a_page_post_naming_a_question_deleted_since_gets_409_not_500(client, replication):
    from surveys.models import Question

    definition = seeded_survey(replication)
    url = start(client)
    page = client.get(url)
    # The author deletes a question, and the cached definition still names it.
    Question.objects.filter(pk=definition.page(1).questions[0].id).delete()
    data = {**valid_answers(definition.page(1)), "csrfmiddlewaretoken": csrf_token(page)}
    response = client.post(url, data)
    assert response.status_code == 409
    assert "survey changed" in response.content.decode()
    assert not Answer.objects.exists()
    assert Response.objects.get().reached_page == 1
    fresh = client.get(url)
    assert fresh.status_code == 200
    assert f'name="{definition.page(1).questions[0].field_name}"' not in fresh.content.decode()


def _start_form(client, slug="climate"):
    intro = client.get(f"/s/{slug}/")
    return re.findall(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)"', intro.content.decode()
    )


def test_a_double_clicked_start_makes_one_response(client, replication):
    seeded_survey(replication)
    form = dict(_start_form(client))
    first = client.post("/s/climate/", form)
    second = client.post("/s/climate/", form)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert Response.objects.count() == 1


def test_a_start_form_sent_from_another_browser_starts_its_own_response(client, replication):
    seeded_survey(replication)
    form = dict(_start_form(client))
    first = client.post("/s/climate/", form)
    other = https_client()
    copied = {**form, "csrfmiddlewaretoken": csrf_token(other.get("/s/climate/"))}
    second = other.post("/s/climate/", copied)
    assert first.status_code == second.status_code == 302
    assert first["Location"] != second["Location"], "another browser got the first one's link"
    assert Response.objects.count() == 2


def test_concurrent_posts_of_one_start_form_make_one_response(client, replication):
    seeded_survey(replication)
    form = dict(_start_form(client))
    browsers = [https_client() for _ in range(4)]
    for browser in browsers:
        browser.cookies = client.cookies  # one browser's cookies, several requests in flight
    barrier = threading.Barrier(len(browsers))

    def post(browser):
        barrier.wait()
        try:
            return browser.post("/s/climate/", form)["Location"]
        finally:
            connections.close_all()

    with ThreadPoolExecutor(len(browsers)) as pool:
        locations = set(pool.map(post, browsers))
    assert len(locations) == 1
    assert Response.objects.count() == 1


def test_continue_goes_to_the_response_the_taker_is_filling_in(client, replication):
    definition = seeded_survey(replication)
    form = dict(_start_form(client))
    client.post("/s/climate/", form)
    url = client.post("/s/climate/", form)["Location"]
    post_page(client, url, valid_answers(definition.page(1)))
    intro = client.get("/s/climate/").content.decode()
    token = url.split("/r/")[1].split("/")[0]
    continue_link = re.search(r'href="(/s/climate/r/[^"]+)"', intro).group(1)
    assert continue_link == f"/s/climate/r/{token}/"
    assert client.get(continue_link)["Location"].endswith("/p/2/")


@pytest.mark.parametrize("value", ["²", "①", "\u0663", "9" * 5000, "-1", "1.0"])
@pytest.mark.parametrize("kind", ["single", "multiple", "scale"])
def test_choice_values_that_are_not_ids_get_400_with_the_forms_error(
    client, replication, kind, value
):
    definition = seeded_survey(replication)
    url = start(client)
    data = valid_answers(definition.page(1))
    question = next(q for q in definition.page(1).questions if q.kind == kind and q.required)
    data[question.field_name] = [value] if kind == "multiple" else value
    response = post_page(client, url, data)
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not Answer.objects.exists()


@pytest.mark.parametrize(
    ("name", "values", "error"),
    [
        ("single", ["{0}", "{1}"], "Send one answer to this question."),
        ("multiple", ["{0}", "{0}"], "Choose each option at most once."),
    ],
)
def test_repeated_answers_get_400_and_write_nothing(client, replication, name, values, error):
    definition = seeded_survey(replication)
    url = start(client)
    data = valid_answers(definition.page(1))
    question = next(q for q in definition.page(1).questions if q.kind == name and q.required)
    ids = [str(choice.id) for choice in question.choices]
    data[question.field_name] = [value.format(*ids) for value in values]
    response = post_page(client, url, data)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Answer.objects.exists()


def test_a_start_post_runs_two_statements_on_the_primary(client, replication):
    seeded_survey(replication)
    form = dict(_start_form(client))
    with queries_by_alias() as queries:
        response = client.post("/s/climate/", form)
    assert response.status_code == 302
    assert len(queries[PRIMARY]) == 2, queries[PRIMARY]
    assert "ON CONFLICT" in queries[PRIMARY][0]
    assert "pg_current_wal_lsn" in queries[PRIMARY][1]


def test_a_start_form_with_a_bad_key_gets_400_and_starts_nothing(client, replication):
    seeded_survey(replication)
    form = {**dict(_start_form(client)), "start_key": "²" * 32}
    response = client.post("/s/climate/", form)
    assert response.status_code == 400
    assert "not valid" in response.content.decode()
    assert not Response.objects.exists()
