"""The CSV export: every response and answer, staff only, from a replica, in keyset chunks."""

import csv
import io
import tracemalloc

import pytest

from routing import PRIMARY, replicas
from surveys import demo, export, selectors
from surveys.models import Answer, Question, Response, Survey
from tests.helpers import queries_by_alias, replica_aliases, seeded_survey


def _url(slug="climate"):
    return f"/admin/surveys/survey/{Survey.objects.get(slug=slug).pk}/export.csv"


def _download(browser, url):
    response = browser.get(url)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="climate-responses.csv"' in response["Content-Disposition"]
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_export_has_a_row_per_response_and_a_column_per_question(author, replication):
    definition = seeded_survey(replication, pages=2, questions_per_page=10)  # every kind
    demo.create_responses(Survey.objects.get(slug="climate"), 30)
    replication.wait_for_replay()
    assert f'<a href="{_url()}">CSV</a>' in author.get("/admin/surveys/survey/").content.decode()
    table = _download(author, _url())
    head, body = table[0], table[1:]
    questions = definition.questions()
    assert head[:3] == ["response", "started_at", "completed_at"]
    assert head[3:] == [
        f"p{page.position}.{n} {q.text}"
        for page in definition.pages
        for n, q in enumerate(page.questions, 1)
    ]
    assert [int(row[0]) for row in body] == list(
        Response.objects.order_by("id").values_list("id", flat=True)
    )
    # Every stored answer is in its cell, choices by their labels.
    labels = {c.id: c.label for q in questions for c in q.choices}
    column = {q.id: 3 + i for i, q in enumerate(questions)}
    kinds = {q.id: q.kind for q in questions}
    rows = {int(row[0]): row for row in body}
    answers = Answer.objects.values_list(
        "response_id", "question_id", "choice_ids", "scale_value", "text_value"
    )
    assert answers.count() > 30
    for response_id, question_id, choice_ids, scale, text in answers:
        cell = rows[response_id][column[question_id]]
        if kinds[question_id] in (Question.Kind.SINGLE, Question.Kind.MULTIPLE):
            assert cell == "; ".join(labels[c] for c in choice_ids)
        elif kinds[question_id] == Question.Kind.SCALE:
            assert cell == str(scale)
        else:
            assert cell == text


def test_the_export_is_for_staff_only(client, replication):
    seeded_survey(replication, pages=1, questions_per_page=2)
    response = client.get(_url())
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_quoted(author, replication):
    seeded_survey(replication, pages=1, questions_per_page=10)  # the 10th is a text question
    survey = Survey.objects.get(slug="climate")
    demo.create_responses(survey, 1, completed_share=1)
    text = Question.objects.filter(page__survey=survey, kind=Question.Kind.TEXT).first()
    Answer.objects.update_or_create(
        response=Response.objects.get(),
        question=text,
        defaults={"text_value": '=HYPERLINK("http://x")'},
    )
    replication.wait_for_replay()
    table = _download(author, _url())
    assert '\'=HYPERLINK("http://x")' in table[1]


@pytest.mark.replicas(1)
def test_the_export_reads_a_replica_in_keyset_chunks_and_never_the_primary(
    author, replication, monkeypatch
):
    seeded_survey(replication, pages=1, questions_per_page=2)
    demo.create_responses(Survey.objects.get(slug="climate"), 25, completed_share=1)
    replication.wait_for_replay()
    selectors.survey_definition("climate")  # cached, as it is in service
    monkeypatch.setattr(export, "CHUNK_RESPONSES", 10)
    with queries_by_alias() as queries:
        table = _download(author, _url())
    assert len(table) == 26
    responses = [sql for alias in replica_aliases() for sql in queries[alias]]
    keyset = [sql for sql in responses if sql == export._RESPONSES_SQL]
    assert len(keyset) == 4  # 10 + 10 + 5, then an empty page
    # The primary answered only the admin's own reads (session, user, the survey's row).
    assert not [sql for sql in queries[PRIMARY] if "surveys_answer" in sql]
    assert not [sql for sql in queries[PRIMARY] if "surveys_response" in sql]


@pytest.mark.replicas(1)
def test_without_a_usable_replica_the_export_waits_rather_than_load_the_primary(
    author, replication, monkeypatch
):
    seeded_survey(replication, pages=1, questions_per_page=2)
    monkeypatch.setattr(replicas.pool(), "choose", lambda floor=None: None)
    with queries_by_alias() as queries:
        response = author.get(_url())
    # Back to the list with the reason (a 503 would count against the web host in nginx).
    assert response.status_code == 302
    assert response["Location"] == "/admin/surveys/survey/"
    assert not [sql for sql in queries[PRIMARY] if "surveys_answer" in sql]
    listing = author.get(response["Location"]).content.decode()
    assert "No replica can serve the export now" in listing


def test_memory_stays_flat_as_the_survey_grows(replication):
    """Peak memory of exporting 200 and 2,000 responses in chunks of 20: the chunk bounds it."""
    definition = seeded_survey(replication, pages=1, questions_per_page=4)
    survey = Survey.objects.get(slug="climate")
    demo.create_responses(survey, 200, completed_share=1)
    sum(1 for _ in export.csv_lines(definition, PRIMARY, chunk=20))  # first-use allocations
    peaks = []
    for total in (200, 2000):
        demo.create_responses(survey, total - Response.objects.count(), completed_share=1)
        tracemalloc.start()
        lines = sum(1 for _ in export.csv_lines(definition, PRIMARY, chunk=20))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert lines == total + 1
    # Ten times the rows may not need anything like ten times the memory (measured here: about
    # 170 kB for 200 and 200 kB for 2,000, most of it the first chunk's).
    assert peaks[1] < 1.5 * peaks[0], peaks
