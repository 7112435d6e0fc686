"""Survey-taking views: thin wrappers over selectors and services."""

import uuid

from django.conf import settings
from django.http import Http404
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.crypto import salted_hmac
from django.utils.functional import SimpleLazyObject
from django.views.decorators.http import require_GET, require_http_methods

from routing.state import reads_from_replica
from surveys import memo, selectors, services, takers
from surveys.forms import (
    PageForm,
    StartForm,
    initial_from_answers,
    page_inputs_html,
    reject_unknown_ids,
)
from surveys.models import Answer, Choice, Page, Question, Response, Survey
from surveys.services import Outcome

# Surveys change rarely, so these views may read them (the list of open surveys) from a replica
# even for a client pinned to the primary. A definition comes from the cache, and on a miss
# from the primary (selectors.survey_definition). Admin views never read from a replica.
definitions_from_replica = reads_from_replica(Survey, Page, Question, Choice)
# Results are aggregates cached for seconds: they are read from a replica even for a client who
# just wrote, so that no results page costs the primary anything.
results_from_replica = reads_from_replica(Survey, Page, Question, Choice, Response, Answer)

_CONFLICT_MESSAGES = {
    Outcome.COMPLETED_ALREADY: "This response has already been submitted, so it cannot change.",
    Outcome.PAGE_NOT_REACHED: "Save the earlier pages of this survey first.",
    Outcome.DEFINITION_CHANGED: (
        "This survey changed while you were taking it, so this page was not saved. "
        "Please check its questions and send it again."
    ),
}


def _definition_or_404(slug):
    definition = selectors.survey_definition(slug)
    if definition is None:
        raise Http404("No such survey.")
    return definition


def _taker_or_404(request, definition, token):
    taker = takers.taker_for(request, survey_id=definition.id, token=token)
    if taker is None:
        raise Http404("No such response.")
    return taker


def _onwards(slug, token, taker, definition):
    """Redirect a taker to where they are: the furthest page reached, the review, or done."""
    if taker.completed:
        return redirect("surveys:done", slug, token)
    if taker.reached_page > definition.page_count:
        return redirect("surveys:review", slug, token)
    return redirect("surveys:page", slug, token, taker.reached_page)


def _conflict(request, definition, token, outcome):
    context = {"survey": definition, "token": token, "message": _CONFLICT_MESSAGES[outcome]}
    return render(request, "surveys/conflict.html", context, status=409)


@require_GET
@definitions_from_replica
def survey_list(request):
    return render(request, "surveys/list.html", {"surveys": selectors.open_surveys()})


@require_http_methods(["GET", "POST"])
@definitions_from_replica
def survey_start(request, slug):
    definition = _definition_or_404(slug)
    if request.method == "POST":
        if not definition.is_open or not definition.page_count:
            return render(request, "surveys/closed.html", {"survey": definition}, status=409)
        form = StartForm(request.POST)
        if form.is_valid():
            response = services.response_start(
                survey_id=definition.id,
                start_key=_browser_start_key(request, form.cleaned_data["start_key"]),
            )
            taker = takers.Taker(
                response.pk,
                definition.id,
                response.reached_page,
                completed=response.completed_at is not None,
            )
            takers.remember(request, response.token, taker)
            return _onwards(slug, response.token, taker, definition)
    context = {
        "survey": definition,
        # A fresh key for each view of the page: "Start again" is a new start.
        "form": StartForm(initial={"start_key": uuid.uuid4()}),
        "refused": request.method == "POST",
        "resume_token": takers.in_progress_token(request, definition.id),
    }
    return render(request, "surveys/start.html", context, status=400 if context["refused"] else 200)


def _browser_start_key(request, key):
    """The form's key bound to this browser's CSRF secret: a double click of one form finds
    the response it started, but the key sent from another browser (a copied page, a replayed
    request) starts a response of its own instead of handing over someone's resume link."""
    if key is None:
        return None
    secret = request.META.get("CSRF_COOKIE", "")
    return uuid.UUID(bytes=salted_hmac("tally.start_key", f"{key}:{secret}").digest()[:16])


@require_GET
@definitions_from_replica
def survey_resume(request, slug, token):
    definition = _definition_or_404(slug)
    return _onwards(slug, token, _taker_or_404(request, definition, token), definition)


@require_http_methods(["GET", "POST"])
@definitions_from_replica
def survey_page(request, slug, token, position):
    definition = _definition_or_404(slug)
    page = definition.page(position)
    if page is None:
        raise Http404("No such page.")
    taker = _taker_or_404(request, definition, token)
    if taker.completed:
        if request.method == "POST":
            return _conflict(request, definition, token, Outcome.COMPLETED_ALREADY)
        return redirect("surveys:done", slug, token)
    if position > taker.reached_page:
        if request.method == "POST":
            return _conflict(request, definition, token, Outcome.PAGE_NOT_REACHED)
        return redirect("surveys:page", slug, token, taker.reached_page)

    if request.method == "POST":
        reject_unknown_ids(page, request.POST)
        form = PageForm(page, request.POST)
        if form.is_valid():
            outcome = services.response_submit_page(
                response_id=taker.response_id,
                page=page,
                cleaned=form.cleaned_data,
                submission_id=form.cleaned_data["submission_id"],
            )
            if outcome is Outcome.UNKNOWN:
                raise Http404("No such response.")
            if outcome is Outcome.DEFINITION_CHANGED:
                services.survey_definition_refresh(slug=slug)
                return _conflict(request, definition, token, outcome)
            if outcome is not Outcome.SAVED:
                taker.completed = outcome is Outcome.COMPLETED_ALREADY
                takers.remember(request, token, taker)
                return _conflict(request, definition, token, outcome)
            taker.reached_page = max(taker.reached_page, position + 1)
            takers.remember(request, token, taker)
            if position < definition.page_count:
                return redirect("surveys:page", slug, token, position + 1)
            return redirect("surveys:review", slug, token)
        # Sent with errors: the page as sent, with the form's messages.
        status, inputs, invalid = 400, form.fields_html(), True
    else:
        answers = selectors.response_answers(taker.response_id, page.question_ids)
        initial = initial_from_answers(page, answers)
        # The page's inputs from its skeleton, filled with the saved answers: what the form
        # would render, at a fraction of the cost. The form itself is made only if a
        # template asks for it (the app's do not on a GET).
        form = SimpleLazyObject(lambda: PageForm(page, initial=initial))
        status, inputs, invalid = 200, page_inputs_html(page, initial), False
    context = {
        "survey": definition,
        "page": page,
        "form": form,
        "inputs": inputs,
        "invalid": invalid,
        "token": token,
        "previous": position - 1 if position > 1 else None,
    }
    return render(request, "surveys/page.html", context, status=status)


@require_http_methods(["GET", "POST"])
@definitions_from_replica
def survey_review(request, slug, token):
    definition = _definition_or_404(slug)
    taker = _taker_or_404(request, definition, token)
    if taker.completed:
        return redirect("surveys:done", slug, token)
    if taker.reached_page <= definition.page_count:
        return redirect("surveys:page", slug, token, taker.reached_page)
    if request.method == "POST":
        outcome = services.response_complete(
            response_id=taker.response_id, page_count=definition.page_count
        )
        if outcome is Outcome.UNKNOWN:
            raise Http404("No such response.")
        taker.completed = outcome in (Outcome.SAVED, Outcome.COMPLETED_ALREADY)
        takers.remember(request, token, taker)
        if outcome is Outcome.PAGE_NOT_REACHED:
            return _conflict(request, definition, token, outcome)
        return redirect("surveys:done", slug, token)
    return render(request, "surveys/review.html", {"survey": definition, "token": token})


@require_GET
@definitions_from_replica
def survey_done(request, slug, token):
    definition = _definition_or_404(slug)
    taker = _taker_or_404(request, definition, token)
    if not taker.completed:
        return redirect("surveys:resume", slug, token)
    results_url = reverse("surveys:results", args=[slug])
    return render(request, "surveys/done.html", {"survey": definition, "results_url": results_url})


@require_GET
@results_from_replica
def survey_results(request, slug):
    definition = _definition_or_404(slug)
    context = {"survey": definition, "refresh_seconds": settings.TALLY_RESULTS_CACHE_SECONDS}
    try:
        context["counts"] = _results_counts_html(
            definition.id, selectors.survey_results(definition)
        )
    except selectors.ResultsBusy:
        # Another request is counting them and outlasted the wait. Not a 503: nginx counts a
        # web host's 503s against it (max_fails), and this one says nothing about the host.
        response = render(request, "surveys/results.html", context)
        response["Refresh"] = "2"
        response["Cache-Control"] = "no-store"
        return response
    return render(request, "surveys/results.html", context)


# This process's rendering of each survey's counts: {survey id: (the results, their HTML)}. The
# results change once per rebuild (TALLY_RESULTS_CACHE_SECONDS), and rendering a survey's
# counts (a section per question, a bar per choice) was most of a warm results page's CPU, so
# each process renders them once per rebuild.
_RESULTS_HTML = memo.Recent(256)


def _results_counts_html(survey_id, results):
    last = _RESULTS_HTML.get(survey_id)
    if last is not None and last[0] == results:
        return last[1]
    html = render_to_string("surveys/results_counts.html", {"results": results})
    _RESULTS_HTML.put(survey_id, (results, html))
    return html
