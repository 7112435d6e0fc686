"""What a taker's session remembers about their responses, so page GETs need no lookup."""

from dataclasses import dataclass

from surveys import selectors

_SESSION_KEY = "tally.responses"
# A taker rarely has more than a couple of surveys on the go; the oldest entries are dropped
# so a session stays small (it is read from Redis on every request).
_MAX_REMEMBERED = 20


@dataclass
class Taker:
    """One response as the taker's session knows it."""

    response_id: int
    survey_id: int
    reached_page: int
    completed: bool


def taker_for(request, *, survey_id, token):
    """Return the Taker for a resume token, from the session or (resume link) the database."""
    remembered = request.session.get(_SESSION_KEY, {}).get(token)
    if remembered is not None:
        taker = Taker(*remembered)
    else:
        response = selectors.response_by_token(token)
        if response is None:
            return None
        taker = Taker(
            response.pk,
            response.survey_id,
            response.reached_page,
            response.completed_at is not None,
        )
        remember(request, token, taker)
    return taker if taker.survey_id == survey_id else None


def remember(request, token, taker):
    """Store a Taker in the session under its resume token.

    Only a POST creates a session; a GET updates one that exists. POSTs are what nginx limits
    per client, so that limit bounds how fast one client can fill the session store (the
    capacity model's sizing of it).
    """
    responses = dict(request.session.get(_SESSION_KEY, {}))
    if request.method != "POST" and request.session.session_key is None:
        return
    responses.pop(token, None)
    responses[token] = [taker.response_id, taker.survey_id, taker.reached_page, taker.completed]
    while len(responses) > _MAX_REMEMBERED:
        responses.pop(next(iter(responses)))
    request.session[_SESSION_KEY] = responses


def in_progress_token(request, survey_id):
    """Return the resume token of the taker's unfinished response to a survey, if any.

    The most recently used one: `remember` moves a response to the end each time it is used,
    so a response the taker started and left empty does not win over the one they fill in.
    """
    remembered = request.session.get(_SESSION_KEY, {})
    for token, (_, remembered_survey, _, completed) in reversed(remembered.items()):
        if remembered_survey == survey_id and not completed:
            return token
    return None
