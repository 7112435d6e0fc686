"""The rule and check registries, and the arithmetic helpers every rule shares.

Each rule is one function that computes its value from the inputs and the earlier rules (the
namespace `v`); its decorator carries the same rule as a spreadsheet formula, so the two forms
sit side by side. Formula templates name inputs and outputs in braces ({web_cores}); the
spreadsheet writer replaces each with the cell that holds it. Two macros keep binary float noise
from moving a rounding step (2.9999999 and 3.0000001 must both round to 3 in Python, Excel and
LibreOffice alike): UP(x) is ROUNDUP(ROUND(x,6),0) and DOWN(x) is INT(ROUND(x,6)); `up` and
`down` are their Python twins.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace


def up(x: float) -> int:
    """Round up to an integer, after rounding away float noise (the UP() macro)."""
    return math.ceil(round(x, 6))


def down(x: float) -> int:
    """Round down to an integer, after rounding away float noise (the DOWN() macro)."""
    return math.floor(round(x, 6))


def num(x: float) -> str:
    """A number for messages and tables: integers plainly, others to two decimals."""
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


BUF = "(1+{connection_buffer_percent}/100)"


def buf(v) -> float:
    """The connection buffer as a factor (BUF in formulas)."""
    return 1 + v.connection_buffer_percent / 100


def critbinom(trials: int, p: float, alpha: float) -> int:
    """The spreadsheet's CRITBINOM: the smallest k with P(Binomial(trials, p) <= k) >= alpha.
    Terms in log space, so thousands of trials do not overflow a float."""
    n = int(trials)
    if p <= 0:
        return 0
    if p >= 1:
        return n
    cumulative = 0.0
    for k in range(n + 1):
        log_term = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        cumulative += math.exp(log_term + k * math.log(p) + (n - k) * math.log1p(-p))
        if cumulative >= alpha - 1e-12:
            return k
    return n


@dataclass(frozen=True)
class Rule:
    name: str
    unit: str
    formula: str  # the spreadsheet form, over {names}
    source: str
    compute: Callable[[SimpleNamespace], float]

    @property
    def why(self) -> str:
        return inspect.getdoc(self.compute) or ""


RULES: list[Rule] = []


def rule(unit: str, formula: str, source: str):
    """Register the decorated function as a rule; `formula` is its spreadsheet form. Rules run
    in the order they are registered (rules/__init__.py imports the tiers in that order)."""

    def register(compute):
        RULES.append(Rule(compute.__name__, unit, formula, source, compute))
        return compute

    return register


@dataclass(frozen=True)
class Check:
    name: str
    used: str  # an output or input that must not exceed...
    limit: str  # ...this one
    explain: Callable[[SimpleNamespace], str]

    @property
    def why(self) -> str:
        return inspect.getdoc(self.explain) or ""

    @property
    def formula(self) -> str:
        return f'IF(ROUND({{{self.used}}},6)<=ROUND({{{self.limit}}},6),"ok","FAIL")'

    def passes(self, values: dict) -> bool:
        return round(values[self.used], 6) <= round(values[self.limit], 6)


CHECKS: list[Check] = []


def check(used: str, limit: str, name: str | None = None):
    """Register a check that `used` <= `limit`; the function words the failure."""

    def register(explain):
        CHECKS.append(Check(name or explain.__name__, used, limit, explain))
        return explain

    return register
