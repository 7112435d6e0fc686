"""Reading a Tally page's form the way a taker's browser would, without a browser."""

from __future__ import annotations

import random
import re
from html import unescape

# A survey's link on the front page, with its slug.
SURVEY_LINK = re.compile(r'href="/s/([\w-]+)/"')


# The three tags a form's fields are read from, and the ends of two of them. An attribute value
# may hold ">" only inside quotes. The page's HTML is scanned with this one expression rather than
# an HTMLParser: the load generator reads a page of ten questions about twice per request, on the
# same cores as the fleet it measures, and html.parser took 2.3 ms a page there (this, 0.2 ms).
_TAG = re.compile(
    r"""<(?:(form|input|textarea)((?:[^>"']|"[^"]*"|'[^']*')*)>|/(form|textarea)\s*>)""",
    re.IGNORECASE,
)
_ATTRIBUTE = re.compile(r"""([^\s=/>"']+)(\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]*)))?""")


def _attributes(text: str) -> dict[str, str | None]:
    """A tag's attributes as a browser reads them: names in lower case, values unescaped, None
    for an attribute written without a value (`checked`); the first of a repeated name wins."""
    found: dict[str, str | None] = {}
    for name, assigned, double, single, bare in _ATTRIBUTE.findall(text):
        found.setdefault(name.lower(), unescape(double or single or bare) if assigned else None)
    return found


class Form:
    """The first <form method=post> of a page: its action, hidden fields and questions.

    `fields` is what a taker who picks the first option everywhere sends; `answers(rng)` is a
    random but valid set of answers: one option of each radio group, one or more of each set of
    checkboxes, a short text in every textarea. `saved` is what the page shows as already
    answered (checked options, textarea contents): a re-read compares it with what was posted.
    """

    def __init__(self, html: str):
        self.action: str | None = None
        self.hidden: dict[str, str] = {}
        self.radios: dict[str, list[str]] = {}
        self.checkboxes: dict[str, list[str]] = {}
        self.texts: list[str] = []
        self.saved: dict[str, list[str]] = {}
        textarea: tuple[str, int] | None = None  # its name, where its contents begin
        for match in _TAG.finditer(html):
            tag, attributes, end = match.group(1), match.group(2), match.group(3)
            if end:
                end = end.lower()
                if end == "textarea" and textarea is not None:
                    self._text(textarea[0], html[textarea[1] : match.start()])
                    textarea = None
                elif end == "form" and self.action is not None:
                    break
                continue
            if textarea is not None:  # a textarea holds text, not tags
                continue
            tag, attrs = tag.lower(), _attributes(attributes)
            if self.action is None:
                if tag == "form" and (attrs.get("method") or "").lower() == "post":
                    self.action = attrs.get("action") or ""
            elif attrs.get("name") and tag == "input":
                self._input(attrs)
            elif attrs.get("name") and tag == "textarea":
                self.texts.append(attrs["name"])
                textarea = (attrs["name"], match.end())

    def _input(self, attrs: dict) -> None:
        kind, name, value = (attrs.get("type") or "text").lower(), attrs["name"], attrs.get("value")
        value = value or ""
        if kind == "radio":
            self.radios.setdefault(name, []).append(value)
        elif kind == "checkbox":
            self.checkboxes.setdefault(name, []).append(value)
        elif kind != "submit":
            self.hidden[name] = value
        if kind in ("radio", "checkbox") and "checked" in attrs:
            self.saved.setdefault(name, []).append(value)

    def _text(self, name: str, raw: str) -> None:
        # Like a browser, drop the newline that may follow the start tag (Django's widget
        # writes one).
        text = unescape(raw).removeprefix("\n")
        if text:
            self.saved[name] = [text]

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
