"""Tally's capacity model: the sizing of every tier, derived from each environment's inputs.

`inputs` reads an environment (capacity.yml, calibration.yml, the inventory's host counts),
`rules/` holds the rules one tier per module (each rule's Python and spreadsheet forms side by
side), `checks` the limits they must respect, `model` evaluates them, `outputs/` writes the
spreadsheet, the Markdown, the role variables and the typed predictions, `calibration` keeps
measured service times with the machine they were measured on, `__main__` is the command line.
"""

from .inputs import DEPLOY_DIR, Inputs, inventory_groups, load
from .model import Model, evaluate
from .outputs.predictions import Predictions

__all__ = ["DEPLOY_DIR", "Inputs", "Model", "Predictions", "evaluate", "inventory_groups", "load"]


def predictions(env: str, **counts: int) -> Predictions:
    """The typed predictions of deploy/<env> (host counts from its inventory unless given)."""
    return evaluate(load(env, counts=counts or None)).predictions()
