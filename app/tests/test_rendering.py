"""Pages render as Django's widgets rendered them, and a page GET stays cheap.

page.html used to render each question with `{{ field }}` (Django's widget templates); it now
takes its inputs from surveys/rendering.py. The old way lives on here only, as the reference:
these tests render the same pages both ways and require the same bytes, for every question
kind, blank, prefilled, bound and with errors, with help text or without, required or optional,
and with labels that need escaping. Then a budget of Python function calls for one page GET
keeps the cost from creeping back.
"""

import dataclasses
import itertools
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from django import forms
from django.conf import settings
from django.http import QueryDict
from django.template import engines
from django.test import override_settings

import surveys
from surveys.definitions import ChoiceDef, PageDef, QuestionDef, SurveyDef
from surveys.forms import PageForm, initial_from_answers, page_inputs_html
from surveys.models import Answer, Question
from surveys.rendering import PageSkeleton
from tests.helpers import csrf_token, post_page, seeded_survey, start, valid_answers

PAGE_HTML = Path(surveys.__file__).parent / "templates" / "surveys" / "page.html"
# What stands for the inputs in page.html now.
_FIELDS_HTML = re.compile(r"\{\{ inputs \}\}(\{#.*?#\})?")
# ... and what page.html had in its place: Django's widget and error templates, through
# BoundField. Kept here only, as the reference the renderer is held to.
DJANGO_WIDGETS = """{{ form.submission_id }}
  {{ form.submission_id.errors }}
  {% for field in form.visible_fields %}
  <fieldset class="question{% if field.errors %} invalid{% endif %}">
    <legend>{{ field.label }}{% if field.field.required %} <span class="required">*</span>{% endif %}</legend>
    {% if field.help_text %}<p class="help">{{ field.help_text }}</p>{% endif %}
    {{ field.errors }}
    {{ field }}
  </fieldset>
  {% endfor %}"""  # noqa: E501 (template lines as they were)


def django_widgets_page():
    """page.html's source with its inputs rendered by Django's widgets again."""
    source = PAGE_HTML.read_text()
    assert len(_FIELDS_HTML.findall(source)) == 1, "page.html no longer has {{ inputs }}"
    return _FIELDS_HTML.sub(lambda _: DJANGO_WIDGETS, source)


@contextmanager
def page_template(source=None):
    """Serve surveys/page.html from `source` (None: the app's own) inside the block.

    Both ways get the same loaders (cached, as Django sets them up by default), so the only
    difference between them is page.html: the way the bench script switches too.
    """
    loaders = ["django.template.loaders.app_directories.Loader"]
    if source is not None:
        loaders.insert(0, ("django.template.loaders.locmem.Loader", {"surveys/page.html": source}))
    engine = settings.TEMPLATES[0]
    options = {**engine["OPTIONS"], "loaders": [("django.template.loaders.cached.Loader", loaders)]}
    with override_settings(TEMPLATES=[{**engine, "APP_DIRS": False, "OPTIONS": options}]):
        yield


def calls_in(function, *args):
    """Run `function(*args)`; return how many Python function calls it made (sys.setprofile).

    A count, not a time: the same code makes the same calls on a loaded machine or a quiet one,
    so a budget of calls can be checked in every test run.
    """
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        if event == "call":
            count += 1

    sys.setprofile(profile)
    try:
        function(*args)
    finally:
        sys.setprofile(None)
    return count


# A page with every question kind, required and optional, with help text and without, all of
# them with text that needs escaping. Built in memory: rendering needs no database.
NEEDS_ESCAPING = "<b>Fish</b> & \"chips\" 'n' peas"
KINDS = [Question.Kind.SINGLE, Question.Kind.MULTIPLE, Question.Kind.SCALE, Question.Kind.TEXT]


def _question(number, kind, *, required, help_text):
    choices = ()
    if kind in (Question.Kind.SINGLE, Question.Kind.MULTIPLE):
        labels = [f"Yes & <no> {number}", 'Often "sometimes"', "Never"]
        choices = tuple(ChoiceDef(number * 10 + i, label) for i, label in enumerate(labels, 1))
    return QuestionDef(
        id=number,
        kind=kind,
        text=f"{kind}: {NEEDS_ESCAPING}?",
        help_text=help_text,
        required=required,
        choices=choices,
    )


PAGE = PageDef(
    position=1,
    title="Lunch & <learning>",
    questions=tuple(
        _question(number, kind, required=required, help_text=help_text)
        for number, (kind, required, help_text) in enumerate(
            itertools.product(KINDS, (True, False), ("", f"Help: {NEEDS_ESCAPING}")), 1
        )
    ),
)
SURVEY = SurveyDef(id=1, slug="lunch", title="Lunch", intro="", is_open=True, pages=(PAGE,))
TOKEN = "abcdefghijklmnopqrstuvwx"
TEXT_ANSWER = 'I said "no" & <left>\nTwice.'
SUBMISSION_ID = "5f1888d8-2741-41dc-a68f-0efba9087da7"


def _answers(questions):
    """Saved answers to `questions` as the view reads them: {question_id: Answer}."""
    answers = {}
    for n, question in enumerate(questions):
        if question.kind == Question.Kind.SINGLE:
            answers[question.id] = Answer(choice_ids=[question.choices[1].id])
        elif question.kind == Question.Kind.MULTIPLE:
            first, _, third = question.choices
            answers[question.id] = Answer(choice_ids=[first.id, third.id])
        elif question.kind == Question.Kind.SCALE:
            answers[question.id] = Answer(scale_value=4)
        else:  # a text answer may be empty
            answers[question.id] = Answer(text_value=TEXT_ANSWER if n % 2 else "")
    return answers


def _post(**values):
    data = QueryDict(mutable=True)
    for name, value in values.items():
        data.setlist(name, value if isinstance(value, list) else [value])
    return data


def _by_kind(kind):
    return [question for question in PAGE.questions if question.kind == kind]


def _valid_post():
    data = {}
    for question in PAGE.questions:
        if question.kind == Question.Kind.SINGLE:
            data[question.field_name] = str(question.choices[2].id)
        elif question.kind == Question.Kind.MULTIPLE:
            data[question.field_name] = [str(c.id) for c in question.choices[:2]]
        elif question.kind == Question.Kind.SCALE:
            data[question.field_name] = "2"
        else:
            data[question.field_name] = TEXT_ANSWER
    data["submission_id"] = SUBMISSION_ID
    return _post(**data)


def _invalid_post():
    """Something wrong with every question: missing, unknown, twice, too long, not an id."""
    single, multiple, scale, text = (_by_kind(kind) for kind in KINDS)
    return _post(
        **{
            single[0].field_name: "not an id",
            single[1].field_name: [str(single[1].choices[0].id), str(single[1].choices[1].id)],
            single[2].field_name: "999",
            multiple[0].field_name: [str(multiple[0].choices[0].id)] * 2,
            multiple[1].field_name: ["<script>", str(multiple[1].choices[1].id)],
            scale[0].field_name: "9",
            scale[1].field_name: ["3", "3"],
            scale[3].field_name: "4",  # a valid answer among the errors is shown as sent
            text[0].field_name: "<" * 2001,
            text[2].field_name: ["one", "two"],
            "submission_id": "<not a uuid>",
        }
    )


# state: (how its PageForm is made, {text the page must show: how many times}), the page
# being the same both ways.
STATES = {
    "blank": (lambda: PageForm(PAGE), {" checked": 0, "errorlist": 0}),
    "prefilled": (
        lambda: PageForm(PAGE, initial=initial_from_answers(PAGE, _answers(PAGE.questions))),
        # 4 single + 4 x 2 multiple + 4 scale options checked; 2 text answers shown.
        {" checked": 16, "errorlist": 0, "I said &quot;no&quot; &amp; &lt;left&gt;\nTwice.": 2},
    ),
    "half prefilled": (
        lambda: PageForm(PAGE, initial=initial_from_answers(PAGE, _answers(PAGE.questions[::2]))),
        {" checked": 8, "errorlist": 0},
    ),
    "sent valid": (
        lambda: PageForm(PAGE, _valid_post()),
        {" checked": 16, "errorlist": 0, f'value="{SUBMISSION_ID}"': 1},
    ),
    "sent with errors": (
        lambda: PageForm(PAGE, _invalid_post()),
        {
            "Please correct the answers marked below.": 1,
            "errorlist": 10 + 1,  # 10 questions and submission_id
            'class="question invalid"': 10,
            'aria-invalid="true"': 3 * 3 + 2 * 3 + 2 * 5 + 3,  # every input of those questions
            'id="id_submission_id_error"': 1,
            "&lt;script&gt;": 1,  # in the error message, escaped
            # What was sent is shown: an answer sent twice once, the valid ones among errors.
            " checked": 5,
            "\ntwo</textarea>": 1,
        },
    ),
    "prefix, required missing": (
        lambda: PageForm(PAGE, _post(), prefix="p"),
        {'name="p-q1"': 3, 'id="id_p-q1_0"': 1, 'for="id_p-q1_0"': 1, "errorlist": 8},
    ),
    "no ids, with errors": (
        lambda: PageForm(PAGE, _invalid_post(), auto_id=False),
        {" id=": 0, " for=": 0, "errorlist": 11},
    ),
    "widgets with a class, with errors": (
        lambda: _with_classes(PageForm(PAGE, _invalid_post())),
        {'<div id="id_q1" class="wide">': 1, 'class="wide" required': 6, 'class="tall"': 4},
    ),
    "a blank first choice": (
        lambda: _with_blank_choice(PageForm(PAGE)),
        {'value=""': 4, "\n No answer</label>": 4},
    ),
    "own ids, prefilled": (
        lambda: PageForm(PAGE, initial={"q1": 12, "q13": ""}, auto_id="f-%s"),
        {'id="f-q1_1"': 1, 'for="f-q1_1"': 1, 'id="f-q13"': 1, " checked": 1},
    ),
}


def _with_classes(form):
    """`form` with a CSS class on its single-choice (radio) and text widgets."""
    for question in PAGE.questions:
        if question.kind in (Question.Kind.SINGLE, Question.Kind.TEXT):
            widget = form.fields[question.field_name].widget
            widget.attrs["class"] = "wide" if question.kind == Question.Kind.SINGLE else "tall"
    return form


def _with_blank_choice(form):
    """`form` with a (None, "No answer") choice first in its single-choice questions."""
    for question in _by_kind(Question.Kind.SINGLE):
        field = form.fields[question.field_name]
        field.choices = [(None, "No answer"), *field.choices]
    return form


def render_both(make_form):
    """Render page.html with Django's widgets and as it is now, each for a form of its own
    made by `make_form` and validated as the view validates what was sent: (old, new)."""
    engine = engines["django"]
    pages = []
    for template in (
        engine.from_string(django_widgets_page()),
        engine.get_template("surveys/page.html"),
    ):
        form = make_form()
        form.is_valid()  # nothing for an unbound form
        context = {
            **{"survey": SURVEY, "page": PAGE, "token": TOKEN, "previous": None},
            # As the view gives them: the form, its inputs' HTML, and whether it has errors.
            **{"form": form, "inputs": form.fields_html(), "invalid": bool(form.errors)},
        }
        pages.append(template.render(context))
    return tuple(pages)


@pytest.mark.parametrize("state", list(STATES))
def test_a_page_renders_byte_for_byte_as_djangos_widgets_render_it(state):
    make_form, shows = STATES[state]
    old, new = render_both(make_form)
    assert new == old
    # ... and the page is one that shows what the state is about, not an empty one.
    assert new.count("<fieldset") == len(PAGE.questions) == 16
    for text, count in shows.items():
        assert new.count(text) == count, text
    assert NEEDS_ESCAPING not in new
    assert "&lt;b&gt;Fish&lt;/b&gt; &amp; &quot;chips&quot; &#x27;n&#x27; peas" in new


@pytest.mark.parametrize("state", ["blank", "prefilled", "half prefilled"])
def test_a_page_skeleton_filled_with_saved_answers_is_what_the_form_renders(state):
    form = STATES[state][0]()
    assert page_inputs_html(PAGE, form.initial) == form.fields_html()
    # Filled again, the kept skeleton gives the same for the same answers.
    assert page_inputs_html(PAGE, form.initial) == form.fields_html()


def test_a_changed_page_gets_a_skeleton_of_its_own():
    original = page_inputs_html(PAGE, {})
    question = dataclasses.replace(PAGE.questions[0], text="Reworded & new?")
    changed = dataclasses.replace(PAGE, questions=(question, *PAGE.questions[1:]))
    html = page_inputs_html(changed, {})
    assert html == PageForm(changed).fields_html() != original
    assert "Reworded &amp; new?" in html
    assert page_inputs_html(PAGE, {}) == original


def test_a_skeleton_is_made_from_a_form_without_values_only():
    with pytest.raises(ValueError, match="unbound form without initial values"):
        PageSkeleton(PageForm(PAGE, initial={"q1": 1}))
    with pytest.raises(ValueError, match="unbound form without initial values"):
        PageSkeleton(PageForm(PAGE, _valid_post()))


def test_a_widget_without_a_renderer_is_refused_not_left_out():
    form = PageForm(PAGE)
    field = form.fields[PAGE.questions[0].field_name]
    field.widget = forms.Select(choices=field.choices)
    with pytest.raises(TypeError, match="no HTML for a Select"):
        form.fields_html()


def _without_csrf_token(response):
    """A page's body with its CSRF token (masked afresh for every page) taken out."""
    token = csrf_token(response)
    return response.content.decode().replace(token, "<csrf token>")


def test_the_demo_survey_renders_through_the_view_as_with_djangos_widgets(client, replication):
    definition = seeded_survey(replication)
    first = start(client)
    assert post_page(client, first, valid_answers(definition.page(1), variant=3)).status_code == 302
    second = first.replace("/p/1/", "/p/2/")
    page = definition.page(1)
    # Page 1 answered, but two answers wrong: a scale value off the scale, a text too long.
    wrong = {
        **valid_answers(page),
        page.questions[0].field_name: "9",
        page.questions[9].field_name: "<" * 2001,
    }
    bodies = {}
    for way, source in (("old", django_widgets_page()), ("new", None)):
        with page_template(source):
            prefilled, blank = client.get(first), client.get(second)
            refused = client.post(first, {**wrong, "csrfmiddlewaretoken": csrf_token(prefilled)})
        assert (prefilled.status_code, blank.status_code, refused.status_code) == (200, 200, 400)
        bodies[way] = [_without_csrf_token(r) for r in (prefilled, blank, refused)]
    assert bodies["new"] == bodies["old"]
    prefilled, blank, refused = bodies["new"]
    # 4 scale and 3 single answers, 2 options of each of the 2 multiple-choice questions.
    assert prefilled.count(" checked") == 4 + 3 + 2 * 2
    assert " checked" not in blank
    assert refused.count("errorlist") == 2


# A budget of Python function calls (sys.setprofile's "call" events) for one GET of the demo
# survey's page 1, prefilled: everything Django's test client runs for it, middleware, SQL,
# page.html and base.html included. Measured with Django 5.2 and Python 3.11 in this test
# environment (which instruments template rendering), the fewest of three GETs:
#   31,350 calls with page.html rendering {{ field }} through Django's widget templates (235
#          templates; the commit before surveys/rendering.py);
#    3,910 calls with surveys/rendering.py writing the inputs from a PageForm on every GET;
#    1,936 calls (1,936 to 1,947 with 0 to 2 replicas) with the page's skeleton kept per
#          process and filled with the saved answers, the definition unpickled once per
#          change, and the answers read with one fixed statement instead of a queryset.
# The budget leaves 29% for Django upgrades and small changes; widget templates cost about
# 2,700 calls per question of this page ((31,350 - 3,910) / 10), so one question rendered
# through them again breaks it, and so does building the PageForm on every GET again.
PAGE_GET_CALL_BUDGET = 2_500


def test_a_page_get_stays_within_its_budget_of_python_calls(client, replication):
    definition = seeded_survey(replication)
    first = start(client)
    assert post_page(client, first, valid_answers(definition.page(1))).status_code == 302

    def get():
        response = client.get(first)
        assert response.status_code == 200
        return response

    def calls_per_get():
        get()  # whatever is loaded once (templates, the replica pool's state) is loaded
        # The fewest of three: now and then a GET also refreshes the replicas' state.
        return min(calls_in(get) for _ in range(3))

    assert calls_per_get() <= PAGE_GET_CALL_BUDGET
    # Two templates, not one per field and choice.
    assert [template.name for template in get().templates] == ["surveys/page.html", "base.html"]
    # The budget is one that the old way of rendering breaks.
    with page_template(django_widgets_page()):
        assert calls_per_get() > PAGE_GET_CALL_BUDGET
