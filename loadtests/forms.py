"""Reading a Tally page's form the way a taker's browser would, without a browser."""

from __future__ import annotations

import random
from html.parser import HTMLParser


class Form(HTMLParser):
    """The first <form method=post> of a page: its action, hidden fields and questions.

    `fields` is what a taker who picks the first option everywhere sends; `answers(rng)` is a
    random but valid set of answers: one option of each radio group, one or more of each set of
    checkboxes, a short text in every textarea.
    """

    def __init__(self, html: str):
        super().__init__()
        self.action: str | None = None
        self.hidden: dict[str, str] = {}
        self.radios: dict[str, list[str]] = {}
        self.checkboxes: dict[str, list[str]] = {}
        self.texts: list[str] = []
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
        elif tag == "textarea":
            self.texts.append(attrs["name"])

    def handle_endtag(self, tag):
        if tag == "form" and self._in_form:
            self._in_form, self._done = False, True
