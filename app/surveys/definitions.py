"""The immutable shape of a survey (pages, questions, choices) as cached and served to takers."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ChoiceDef:
    id: int
    label: str


@dataclass(frozen=True)
class QuestionDef:
    id: int
    kind: str
    text: str
    help_text: str
    required: bool
    choices: tuple[ChoiceDef, ...] = ()
    scale_low_label: str = ""
    scale_high_label: str = ""

    @property
    def field_name(self):
        return f"q{self.id}"

    @property
    def choice_ids(self):
        return frozenset(choice.id for choice in self.choices)


@dataclass(frozen=True)
class PageDef:
    # The page's ordinal in its survey, 1..N: what URLs, "Page 2 of 4" and a response's
    # reached_page count in. Authors' position numbers only order the pages and may have gaps.
    position: int
    title: str
    questions: tuple[QuestionDef, ...]

    @property
    def question_ids(self):
        return [question.id for question in self.questions]


@dataclass(frozen=True)
class SurveyDef:
    id: int
    slug: str
    title: str
    intro: str
    is_open: bool
    pages: tuple[PageDef, ...]

    @property
    def page_count(self):
        return len(self.pages)

    def page(self, position):
        """Return the page at `position` (1-based), or None if there is no such page."""
        if 1 <= position <= len(self.pages):
            return self.pages[position - 1]
        return None

    def questions(self):
        return [question for page in self.pages for question in page.questions]
