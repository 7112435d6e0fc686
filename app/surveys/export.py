"""A survey's responses as CSV, streamed from a replica in keyset-paginated chunks.

Memory stays flat whatever the survey's size: each chunk is one short query for the next
responses by id (an index on survey and id) and one for their answers, written out and
dropped before the next. Server-side cursors would hold one open transaction for the whole
download, which transaction pooling cannot keep on one server connection; keyset pages need
none. With replicas the export never reads the primary: when none is usable it is refused
rather than moved onto the database every write needs.

Limits: each chunk is a statement of its own, so the file is not one snapshot, and a response
whose id was taken before the export passed it but committed after is left out (ids are
handed out before commit). A download must end within gunicorn's timeout (`app_timeout`): a
sync worker tells its arbiter it is alive only between requests, so a longer one is killed
and the file ends early.
"""

import csv

from django.db import connections

from surveys.definitions import SurveyDef
from surveys.models import Question

CHUNK_RESPONSES = 500
# Two statements whose text never changes: the ORM would compile a new IN (...) list for every
# chunk, and the drivers' statement caches would keep the last hundred or so of them.
_RESPONSES_SQL = """
SELECT id, started_at, completed_at FROM surveys_response
 WHERE survey_id = %s AND id > %s ORDER BY id LIMIT %s
"""
_ANSWERS_SQL = """
SELECT response_id, question_id, choice_ids, scale_value, text_value FROM surveys_answer
 WHERE response_id = ANY(%s)
"""
# A cell a spreadsheet would run as a formula (OWASP, "CSV injection") gets a leading quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(text):
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


class _Line:
    """A file for csv.writer whose write returns the line instead of storing it."""

    def write(self, line):
        return line


def header(definition: SurveyDef):
    return ["response", "started_at", "completed_at"] + [
        f"p{page.position}.{number} {question.text}"
        for page in definition.pages
        for number, question in enumerate(page.questions, start=1)
    ]


def _value(question, answer, labels):
    if answer is None:
        return ""
    if question.kind in (Question.Kind.SINGLE, Question.Kind.MULTIPLE):
        # A choice deleted after it was answered has no label any more: show its id.
        return _cell("; ".join(labels.get(choice_id, f"#{choice_id}") for choice_id in answer[0]))
    if question.kind == Question.Kind.SCALE:
        return "" if answer[1] is None else str(answer[1])
    return _cell(answer[2])


def rows(definition: SurveyDef, using, chunk=None):
    """Yield the header, then one row per response in id order, reading `using` only, in
    pages of `chunk` responses (CHUNK_RESPONSES by default)."""
    chunk = chunk or CHUNK_RESPONSES
    questions = definition.questions()
    labels = {choice.id: choice.label for question in questions for choice in question.choices}
    yield header(definition)
    after = 0
    with connections[using].cursor() as cursor:
        while True:
            cursor.execute(_RESPONSES_SQL, [definition.id, after, chunk])
            responses = cursor.fetchall()
            if not responses:
                return
            cursor.execute(_ANSWERS_SQL, [[response[0] for response in responses]])
            answers = {(row[0], row[1]): row[2:] for row in cursor.fetchall()}
            for response_id, started, completed in responses:
                yield [
                    response_id,
                    started.isoformat(),
                    completed.isoformat() if completed else "",
                    *(
                        _value(question, answers.get((response_id, question.id)), labels)
                        for question in questions
                    ),
                ]
            after = responses[-1][0]


def csv_lines(definition: SurveyDef, using, chunk=None):
    """The export as CSV lines, for a StreamingHttpResponse."""
    writer = csv.writer(_Line())
    return (writer.writerow(row) for row in rows(definition, using, chunk))
