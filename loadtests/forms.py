"""Reading a Tally page's form the way a taker's browser would, without a browser."""

from __future__ import annotations

import random
import re
from html.parser import HTMLParser

# A survey's link on the front page, with its slug.
SURVEY_LINK = re.compile(r'href="/s/([\w-]+)/"')


class Form(HTMLParser):
    """The first <form method=post> of a page: its action, hidden fields and questions.

    `fields` is what a taker who picks the first option everywhere sends; `answers(rng)` is a
    random but valid set of answers: one option of each radio group, one or more of each set of
    checkboxes, a short text in every textarea. `saved` is what the page shows as already
    answered (checked options, textarea contents): a re-read compares it with what was posted.
    """

    def __init__(self, html: str):
        super().__init__()
        self.action: str | None = None
        self.hidden: dict[str, str] = {}
        self.radios: dict[str, list[str]] = {}
        self.checkboxes: dict[str, list[str]] = {}
        self.texts: list[str] = []
        self.saved: dict[str, list[str]] = {}
        self._textarea: str | None = None
        self._in_form = False
        self._done = False
        self.feed(html)
        self.close()

    @property
    def fields(self) -> dict[str, str]:
        first = {name: values[0] for name, values in {**self.radios, **self.checkboxes}.items()}
        return {**self.hidden, **first, **dict.fromkeys(self.texts, "Answered end to end.")}

    def answers(self, rng: random.Random) -> dict[str, str | list[str]]:
        values: dict[str, str | list[str]] = dict(self.hidden)
        for name, options in self.radios.items():
            values[name] = rng.choice(options)
        for name, options in self.checkboxes.items():
            values[name] = rng.sample(options, rng.randint(1, len(options)))
        for name in self.texts:
            values[name] = rng.choice(["Fine.", "Could be better.", "Good, mostly."])
        return values

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self._done:
            return
        if tag == "form" and (attrs.get("method") or "").lower() == "post":
            self._in_form, self.action = True, attrs.get("action") or ""
        elif not self._in_form or not attrs.get("name"):
            return
        elif tag == "input":
            kind, name, value = attrs.get("type", "text"), attrs["name"], attrs.get("value") or ""
            if kind == "radio":
                self.radios.setdefault(name, []).append(value)
            elif kind == "checkbox":
                self.checkboxes.setdefault(name, []).append(value)
            elif kind != "submit":
                self.hidden[name] = value
            if kind in ("radio", "checkbox") and "checked" in attrs:
                self.saved.setdefault(name, []).append(value)
        elif tag == "textarea":
            self.texts.append(attrs["name"])
            self._textarea = attrs["name"]

    def handle_data(self, data):
        if self._textarea is not None:
            self.saved.setdefault(self._textarea, []).append(data)

    def handle_endtag(self, tag):
        if tag == "textarea" and self._textarea is not None:
            # One value, however the parser chunked it; like a browser, drop the newline that
            # may follow the start tag (Django's widget writes one).
            text = "".join(self.saved.pop(self._textarea, [])).removeprefix("\n")
            if text:
                self.saved[self._textarea] = [text]
            self._textarea = None
        elif tag == "form" and self._in_form:
            self._in_form, self._done = False, True

    def stale(self, posted: dict) -> list[str]:
        """The questions whose shown answer differs from what was posted (a stale read)."""
        return sorted(
            name
            for name in [*self.radios, *self.checkboxes, *self.texts]
            if sorted(_as_list(posted.get(name))) != sorted(self.saved.get(name, []))
        )


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
