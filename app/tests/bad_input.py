"""A corpus of bad requests against one taker's first page, run by the app's and the fleet's tests.

Plain data and the standard library only: the app's suite sends the cases with Django's test
client, the end-to-end suite (ansible/tests/test_bad_input.py) through nginx over HTTPS, and both
check the same thing: no case gets a 5xx, and none writes an answer for the attacked response.
`expect` is what the app answers; nginx may answer some cases itself (413, 400, 405, 429).
"""

from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

FORM = "application/x-www-form-urlencoded"
# What the app's page says with a 400: the form's own error banner.
FORM_ERROR = "Please correct the answers marked below."


@dataclass(frozen=True)
class Target:
    """The attacked response's first page, and what a valid submission of it is."""

    slug: str
    token: str
    csrf: str
    # field name -> values that answer page 1 validly
    answers: dict
    # One required question of each kind on page 1, by field name.
    single: str
    multiple: str
    scale: str
    text: str
    # Choice ids of `single` and `multiple`; a question and a choice id from page 2.
    single_choices: tuple
    multiple_choices: tuple
    other_field: str
    other_choice: int

    @property
    def page(self):
        return self.path(1)

    def path(self, position):
        return f"/s/{self.slug}/r/{self.token}/p/{position}/"


@dataclass(frozen=True)
class Question:
    """A question of the survey as the corpus needs it: its page's ordinal, id, kind, choices."""

    page: int
    id: int
    kind: str
    required: bool
    choices: tuple = ()


def _valid_values(question):
    if question.kind == "single":
        return [str(question.choices[0])]
    if question.kind == "multiple":
        return [str(choice) for choice in question.choices[:2]]
    if question.kind == "scale":
        return ["3"]
    return ["Answered by the bad-input corpus."]


def target_from(*, slug, token, csrf, questions):
    """The Target for a response's first page, from the survey's first two pages' questions."""
    first = [q for q in questions if q.page == 1]
    second = [q for q in questions if q.page == 2]

    def required(kind, page=first):
        found = [q for q in page if q.kind == kind and q.required]
        assert found, f"the corpus needs a required {kind} question on page {page[0].page}"
        return found[0]

    single, multiple = required("single"), required("multiple")
    return Target(
        slug=slug,
        token=token,
        csrf=csrf,
        answers={f"q{q.id}": _valid_values(q) for q in first},
        single=f"q{single.id}",
        multiple=f"q{multiple.id}",
        scale=f"q{required('scale').id}",
        text=f"q{next(q for q in first if q.kind == 'text').id}",
        single_choices=single.choices,
        multiple_choices=multiple.choices,
        other_field=f"q{second[0].id}",
        other_choice=required("single", second).choices[0],
    )


@dataclass(frozen=True)
class Case:
    """One request: `body` is sent as is, with `content_type` unless it is None."""

    name: str
    method: str
    path: str
    body: bytes = b""
    content_type: str | None = FORM
    headers: dict = field(default_factory=dict)
    expect: tuple = (400,)
    # Text the app's answer must contain when its status is the first of `expect`.
    says: str = ""


def encode(pairs, raw=""):
    """Form-encode (name, value) pairs; `raw` is appended as is (already percent-encoded)."""
    encoded = "&".join(f"{quote_plus(name)}={quote_plus(value)}" for name, value in pairs)
    return "&".join(part for part in (encoded, raw) if part).encode()


def _pairs(target, *, replace=None, drop=(), extra=(), csrf=True):
    """The valid submission as pairs, with fields replaced ({name: [values]}), dropped or added."""
    replace = replace or {}
    pairs = [("csrfmiddlewaretoken", target.csrf)] if csrf else []
    for name, values in target.answers.items():
        if name in drop:
            continue
        for value in replace.get(name, values):
            pairs.append((name, value))
    for name, values in replace.items():
        if name not in target.answers:
            pairs.extend((name, value) for value in values)
    pairs.extend(extra)
    return pairs


def valid(target):
    """The valid submission of page 1 as pairs: what every case is a corruption of."""
    return _pairs(target)


# Values that no question accepts and that are not choice ids: int() refuses some that
# str.isdigit() accepts (superscripts, circled and other scripts' digits, 5,000 digits).
NOT_IDS = [
    "²",
    "①",
    "٣",  # Arabic-Indic three
    "३",  # Devanagari three
    "\uff15",  # fullwidth five
    "\U0001d7d3",  # mathematical bold five
    "\u2164",  # Roman numeral five
    "½",
    "9" * 5000,
    "1" * 20,
    "-1",
    "-0",
    "+1",
    "1.0",
    "1e3",
    "0x1",
    " 1",
    "1 ",
    "NaN",
    "inf",
    "null",
    "true",
    "[1]",
    "1,2",
    "1\x00",
    "\x00",
    "%",
    "'; DROP TABLE surveys_answer; --",
    "<script>alert(1)</script>",
    "\ufffd",
]
# Well-formed ids that name no choice of the question: the app answers 404 for those.
UNKNOWN_IDS = ["0", "999999999", "9" * 19, "0" * 19]


def _value_cases(target):
    cases = []
    fields = {"single": target.single, "multiple": target.multiple, "scale": target.scale}
    for kind, name in fields.items():
        for number, value in enumerate(NOT_IDS):
            cases.append(
                Case(
                    f"{kind}-not-an-id-{number}",
                    "POST",
                    target.page,
                    encode(_pairs(target, replace={name: [value]})),
                    says=FORM_ERROR,
                )
            )
        for number, value in enumerate(UNKNOWN_IDS):
            cases.append(
                Case(
                    f"{kind}-unknown-id-{number}",
                    "POST",
                    target.page,
                    encode(_pairs(target, replace={name: [value]})),
                    expect=(400,) if kind == "scale" else (404,),
                )
            )
        for label, values in (("empty", [""]), ("blank", [" "]), ("missing", None)):
            pairs = (
                _pairs(target, drop=[name])
                if values is None
                else _pairs(target, replace={name: values})
            )
            cases.append(
                Case(f"{kind}-{label}", "POST", target.page, encode(pairs), says=FORM_ERROR)
            )
    other = str(target.other_choice)
    for name, case_name, values, expect in (
        (target.single, "single-other-pages-choice", [other], 404),
        (
            target.multiple,
            "multiple-other-pages-choice",
            [target.answers[target.multiple][0], other],
            404,
        ),
        (target.single, "single-choice-of-the-multiple", [str(target.multiple_choices[0])], 404),
        (target.multiple, "multiple-choice-of-the-single", [str(target.single_choices[0])], 404),
        (target.scale, "scale-another-pages-choice-id", [other], 400),
    ):
        cases.append(
            Case(
                case_name,
                "POST",
                target.page,
                encode(_pairs(target, replace={name: values})),
                expect=(expect,),
            )
        )
    return cases


def _repeated_cases(target):
    single = [str(choice) for choice in target.single_choices]
    multiple = [str(choice) for choice in target.multiple_choices]
    repeats = {
        "single-twice": {target.single: [single[0], single[1]]},
        "single-same-twice": {target.single: [single[0], single[0]]},
        "single-bad-then-good": {target.single: ["²", single[0]]},
        "single-good-then-bad": {target.single: [single[0], "²"]},
        "multiple-same-choice-twice": {target.multiple: [multiple[0], multiple[0]]},
        "multiple-good-and-bad": {target.multiple: [multiple[0], "①"]},
        "scale-twice": {target.scale: ["1", "2"]},
        "scale-bad-then-good": {target.scale: ["9" * 5000, "3"]},
        "text-twice": {target.text: ["one", "two"]},
        "submission-id-twice": {
            "submission_id": [
                "6f1c1f4e-8f6b-4a53-9f0e-2a1d6c1e0b01",
                "6f1c1f4e-8f6b-4a53-9f0e-2a1d6c1e0b02",
            ]
        },
    }
    return [
        Case(name, "POST", target.page, encode(_pairs(target, replace=replace)), says=FORM_ERROR)
        for name, replace in repeats.items()
    ]


def _field_cases(target):
    unknown = {
        "unknown-question": "q999999999",
        "question-zero": "q0",
        "bare-q": "q",
        "empty-name": "",
        "superscript-question": "q²",
        "huge-question": "q" + "9" * 5000,
        "other-pages-question": target.other_field,
        "upper-case-question": target.single.upper(),
        "question-with-space": target.single + " ",
        "question-with-nul": target.single + "\x00",
        "question-with-brackets": target.single + "[]",
        "not-a-question": "answer",
    }
    cases = [
        Case(
            name,
            "POST",
            target.page,
            encode(_pairs(target, extra=[(field_name, "1")])),
            expect=(404,),
        )
        for name, field_name in unknown.items()
    ]
    texts = {
        "text-one-over-the-limit": "x" * 2001,
        "text-far-over-the-limit": "y" * 100_000,
        "text-with-nul": "bad\x00byte",
        "text-only-nul": "\x00",
    }
    cases += [
        Case(
            name,
            "POST",
            target.page,
            encode(_pairs(target, replace={target.text: [value]})),
            says=FORM_ERROR,
        )
        for name, value in texts.items()
    ]
    submissions = {
        "submission-id-word": "replay",
        "submission-id-digits": "12345",
        "submission-id-short-uuid": "6f1c1f4e-8f6b-4a53-9f0e",
        "submission-id-long": "6f1c1f4e" * 1000,
        "submission-id-nul": "6f1c1f4e-8f6b-4a53-9f0e-2a1d6c1e0b01\x00",
        "submission-id-unicode-digits": "\uff16f1c1f4e-8f6b-4a53-9f0e-2a1d6c1e0b01",
        "submission-id-sql": "' OR '1'='1",
    }
    cases += [
        Case(
            name,
            "POST",
            target.page,
            encode(_pairs(target, replace={"submission_id": [value]})),
            says=FORM_ERROR,
        )
        for name, value in submissions.items()
    ]
    raw = {
        # Invalid UTF-8 as percent escapes, in values that must be ids and in names.
        "single-invalid-utf8": (target.single, "%ff%fe"),
        "multiple-invalid-utf8": (target.multiple, "%c3%28"),
        "scale-invalid-utf8": (target.scale, "%ed%a0%80"),
        "submission-id-invalid-utf8": ("submission_id", "%80"),
    }
    for name, (field_name, escaped) in raw.items():
        pairs = _pairs(target, drop=[field_name])
        cases.append(
            Case(
                name, "POST", target.page, encode(pairs, f"{field_name}={escaped}"), says=FORM_ERROR
            )
        )
    cases.append(
        Case(
            "name-invalid-utf8",
            "POST",
            target.page,
            encode(_pairs(target), "q%ff%fe=1"),
            expect=(404,),
        )
    )
    cases.append(
        Case(
            "broken-percent-escape",
            "POST",
            target.page,
            encode(_pairs(target, drop=[target.single]), f"{target.single}=%zz"),
            says=FORM_ERROR,
        )
    )
    return cases


def _body_cases(target):
    valid = encode(_pairs(target))
    only_csrf = encode([("csrfmiddlewaretoken", target.csrf)])
    cases = [
        Case("nothing-but-the-csrf-token", "POST", target.page, only_csrf, says=FORM_ERROR),
        Case("everything-missing", "POST", target.page, b"", expect=(403,)),
        Case(
            "too-many-fields",
            "POST",
            target.page,
            encode(_pairs(target, extra=[(f"f{i}", "1") for i in range(300)])),
        ),
        Case(
            "body-over-the-app-limit",
            "POST",
            target.page,
            encode(_pairs(target, extra=[("pad", "x" * 300_000)])),
        ),
        Case(
            "body-over-the-nginx-limit",
            "POST",
            target.page,
            encode(_pairs(target, extra=[("pad", "x" * 1_100_000)])),
            expect=(400, 413),
        ),
        Case(
            "many-values-for-the-multiple",
            "POST",
            target.page,
            encode(_pairs(target, replace={target.multiple: ["1"] * 250})),
        ),
    ]
    content_types = {
        "json-content-type": ("application/json", (403,)),
        "text-content-type": ("text/plain", (403,)),
        "xml-content-type": ("application/xml", (403,)),
        "no-content-type": (None, (403,)),
        "empty-content-type": ("", (403,)),
        "multipart-without-boundary": ("multipart/form-data", (400, 403)),
        "multipart-empty-boundary": ("multipart/form-data; boundary=", (400, 403)),
        "multipart-wrong-boundary": ("multipart/form-data; boundary=nothing-here", (400, 403)),
        "utf16-charset-on-utf8": (f"{FORM}; charset=utf-16", (400, 403)),
        "octet-stream": ("application/octet-stream", (403,)),
    }
    for name, (content_type, expect) in content_types.items():
        cases.append(Case(name, "POST", target.page, valid, content_type, expect=expect))
    boundary = "tally-corpus"
    truncated = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
        f'{target.csrf}\r\n--{boundary}\r\nContent-Disposition: form-data; name="{target.single}"'
    ).encode()
    cases.append(
        Case(
            "multipart-truncated",
            "POST",
            target.page,
            truncated,
            f"multipart/form-data; boundary={boundary}",
            expect=(400, 403),
        )
    )
    cases.append(
        Case(
            "json-body-with-csrf-header",
            "POST",
            target.page,
            b'{"q1": "\\u00b2"}',
            "application/json",
            {"X-CSRFToken": target.csrf},
            says=FORM_ERROR,
        )
    )
    return cases


def _csrf_cases(target):
    without = _pairs(target, csrf=False)
    tokens = {
        "csrf-missing": None,
        "csrf-empty": "",
        "csrf-wrong": "A" * len(target.csrf),
        "csrf-short": "x",
        "csrf-nul": target.csrf[:-1] + "\x00",
        "csrf-unicode": "²" * len(target.csrf),
        "csrf-long": target.csrf * 100,
    }
    cases = []
    for name, token in tokens.items():
        pairs = without if token is None else [("csrfmiddlewaretoken", token), *without]
        cases.append(Case(name, "POST", target.page, encode(pairs), expect=(403,)))
    valid = encode(_pairs(target))
    for name, origin in (
        ("origin-elsewhere", "https://evil.example"),
        ("origin-null", "null"),
        ("origin-another-port", "https://127.0.0.1:1"),
    ):
        cases.append(
            Case(name, "POST", target.page, valid, headers={"Origin": origin}, expect=(403,))
        )
    return cases


def _method_cases(target):
    valid = encode(_pairs(target))
    cases = [
        Case(f"method-{method.lower()}", method, target.page, valid, expect=(403, 405))
        for method in ("PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "FOO")
    ]
    review = f"/s/{target.slug}/r/{target.token}/review/"
    done = f"/s/{target.slug}/r/{target.token}/done/"
    resume = f"/s/{target.slug}/r/{target.token}/"
    csrf_only = encode([("csrfmiddlewaretoken", target.csrf)])
    cases += [
        # The review of a response with unsaved pages sends the taker back; it writes nothing.
        Case("review-too-early", "POST", review, csrf_only, expect=(302,)),
        Case("review-with-answers", "POST", review, valid, expect=(302,)),
        Case("done-post", "POST", done, valid, expect=(405,)),
        Case("resume-post", "POST", resume, valid, expect=(405,)),
        Case("results-post", "POST", f"/s/{target.slug}/results/", valid, expect=(405,)),
        Case("list-post", "POST", "/", valid, expect=(405,)),
        Case("healthz-post", "POST", "/healthz", valid, expect=(403, 405)),
        Case("page-put-json", "PUT", target.page, b"{}", "application/json", expect=(403, 405)),
    ]
    start = f"/s/{target.slug}/"
    for name, key in (
        ("start-key-word", "again"),
        ("start-key-unicode-digits", "²" * 32),
        ("start-key-nul", "\x00"),
        ("start-key-huge", "9" * 5000),
    ):
        body = encode([("csrfmiddlewaretoken", target.csrf), ("start_key", key)])
        cases.append(Case(name, "POST", start, body))
    return cases


def _url_cases(target):
    valid = encode(_pairs(target))
    base = f"/s/{target.slug}/r/{target.token}"
    paths = {
        "page-zero": (f"{base}/p/0/", 404),
        "page-past-the-end": (f"{base}/p/99/", 404),
        "page-not-reached": (f"{base}/p/2/", 409),
        "page-negative": (f"{base}/p/-1/", 404),
        "page-float": (f"{base}/p/1.5/", 404),
        "page-exponent": (f"{base}/p/1e0/", 404),
        "page-superscript": (f"{base}/p/{quote('²')}/", 404),
        "page-circled": (f"{base}/p/{quote('①')}/", 404),
        "page-fullwidth": (f"{base}/p/%EF%BC%91/", 404),
        "page-huge": (f"{base}/p/{'9' * 30}/", 404),
        "page-5000-digits": (f"{base}/p/{'9' * 5000}/", 404),
        "page-nul": (f"{base}/p/%00/", 404),
        "page-invalid-utf8": (f"{base}/p/%ff/", 404),
        "page-empty": (f"{base}/p//", 404),
        "page-word": (f"{base}/p/one/", 404),
        "page-without-slash": (f"{base}/p/1", 301),
        "token-unknown": (f"/s/{target.slug}/r/{'A' * 24}/p/1/", 404),
        "token-short": (f"/s/{target.slug}/r/{target.token[:8]}/p/1/", 404),
        "token-long": (f"/s/{target.slug}/r/{target.token * 3}/p/1/", 404),
        "token-bad-characters": (f"/s/{target.slug}/r/{quote(target.token[:-2] + '.!')}/p/1/", 404),
        "token-invalid-utf8": (f"/s/{target.slug}/r/{target.token[:-2]}%ff%fe/p/1/", 404),
        "slug-unknown": (f"/s/no-such-survey/r/{target.token}/p/1/", 404),
        "slug-unicode": (f"/s/{quote('clïmate')}/r/{target.token}/p/1/", 404),
        "slug-invalid-utf8": (f"/s/%ff/r/{target.token}/p/1/", 404),
        "path-dot-segments": (f"{base}/p/1/../2/", (404, 409)),
        "query-string-garbage": (f"{base}/p/1/?%ff=%fe&page=²", 400),
    }
    cases = []
    garbage = encode(_pairs(target, replace={target.single: ["²"]}))
    for name, (path, status) in paths.items():
        expect = status if isinstance(status, tuple) else (status,)
        says = FORM_ERROR if status == 400 else ""
        body = garbage if name == "query-string-garbage" else valid
        cases.append(Case(name, "POST", path, body, expect=expect, says=says))
    return cases


def cases(target):
    """Every case, each a request that must write nothing for the attacked response."""
    return [
        *_value_cases(target),
        *_repeated_cases(target),
        *_field_cases(target),
        *_body_cases(target),
        *_csrf_cases(target),
        *_method_cases(target),
        *_url_cases(target),
    ]
