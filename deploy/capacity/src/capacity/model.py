"""The model evaluated: every rule applied in order to one environment's inputs.

Also the import path the load tests have used (`capacity.model.load`, `.evaluate`,
`.inventory_groups`); new code may import the same names from `capacity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from . import checks, rules  # noqa: F401 (registers the rules and checks)
from .inputs import DEPLOY_DIR, Inputs, inventory_groups, load, numeric_fields
from .outputs.ansible import ANSIBLE_VARS, ansible_vars
from .outputs.predictions import Predictions
from .registry import CHECKS, RULES, critbinom, num

__all__ = [
    "ANSIBLE_VARS",
    "CHECKS",
    "DEPLOY_DIR",
    "RULES",
    "Inputs",
    "Model",
    "Predictions",
    "critbinom",
    "evaluate",
    "inventory_groups",
    "load",
    "num",
]


@dataclass(frozen=True)
class Model:
    inputs: Inputs
    values: dict[str, float]

    def failures(self) -> list[str]:
        """A message for every failed check, naming the numbers."""
        v = SimpleNamespace(**self.values)
        return [f"{c.name}: {c.explain(v)}" for c in CHECKS if not c.passes(self.values)]

    def ansible_vars(self) -> dict[str, int | str]:
        """The role variables the model sets, in the units the services accept."""
        return ansible_vars(self.values)

    def predictions(self) -> Predictions:
        """What the load tests plan by and check."""
        return Predictions.of(self.values, self.inputs.calibrated)


def evaluate(inputs: Inputs) -> Model:
    """Apply every rule in order; each sees the inputs and the rules before it."""
    v = SimpleNamespace(**{f.name: getattr(inputs, f.name) for f in numeric_fields()})
    for r in RULES:
        setattr(v, r.name, r.compute(v))
    return Model(inputs, dict(vars(v)))
