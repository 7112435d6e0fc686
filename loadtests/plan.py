"""What a load test run offers: its stages of simulated users, derived from the capacity model.

Pure functions over the model's typed predictions (capacity.Predictions), whose closed-model
rules turn a request rate into takers and back; nothing here repeats the model's arithmetic.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from capacity import Model, Predictions

# Locust request names, by the capacity model's endpoint whose service time they measure.
# A survey's review page counts as one of its pages (pages_per_survey includes it); the
# landing page, the POST that starts a response and the closing page are its other requests.
ENDPOINTS = {
    "page_get": ("page GET", "review GET", "page reread GET"),
    "page_post": ("page POST", "review POST"),
    "start": ("landing GET", "start POST", "done GET"),
    "results": ("results GET",),
}
ENDPOINT_OF = {name: endpoint for endpoint, names in ENDPOINTS.items() for name in names}
SUBMISSIONS = ("page POST", "review POST")

# Step load: fractions of the predicted capacity at the target utilisation, up to 1.2x; then
# around the predicted saturation (the knee), so the run measures both. A step within
# MIN_STEP_GAP of another is left out.
STEP_FRACTIONS = (0.25, 0.5, 0.75, 1.0, 1.1, 1.2)
MAX_FRACTION = 1.2
KNEE_FRACTIONS = (0.9, 1.0, 1.1)
MIN_STEP_GAP = 0.05
# The step at the predicted capacity, which the analysis reads directly.
CAPACITY_STAGE = f"{1.0:g}x"


@dataclass(frozen=True)
class Stage:
    label: str
    users: int
    seconds: float
    offered_rps: float  # what the users send if every response took the model's service time
    spawn_rate: float = 20.0


@dataclass
class Plan:
    shape: str
    env: str
    host: str
    ca: str | None
    think_time_s: float
    stages: list[Stage]
    profile: str = "taker"
    results_view_share: float = 0.2
    warmup_s: float = 10.0  # measurements of each stage's first seconds are discarded
    seed: int = 1
    model: dict = field(default_factory=dict)  # the capacity model's values, for the report

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> Plan:
        data = json.loads(Path(path).read_text())
        data["stages"] = [Stage(**stage) for stage in data["stages"]]
        return cls(**data)

    @property
    def seconds(self) -> float:
        return sum(stage.seconds for stage in self.stages)


def report_model(m: Model) -> dict:
    """What a plan keeps of the model for the analysis and the report: every value, whether
    the service times were calibrated, and the predicted bottleneck."""
    p = m.predictions()
    return {**m.values, "calibrated": p.calibrated, "bottleneck": p.bottleneck}


def _stage(label, rate, p: Predictions, think, seconds, spawn_rate=20.0, ceiling=math.inf):
    users = p.takers_for(rate, think)
    while users > 1 and p.offered_rps_of(users, think) > ceiling:  # rounding up overshot
        users -= 1
    return Stage(label, users, seconds, round(p.offered_rps_of(users, think), 3), spawn_rate)


def step_stages(p: Predictions, think_time_s: float, step_s: float) -> list[Stage]:
    """The target load, steps up to and a little past the predicted capacity at the target
    utilisation, then steps around the predicted saturation (the knee)."""
    # The target load always has its stage, beyond the capacity too: its p95 is measured.
    stages = [_stage("target", p.offered_rps, p, think_time_s, step_s)]
    ceiling = MAX_FRACTION * p.capacity_rps
    stages += [
        _stage(f"{f:g}x", f * p.capacity_rps, p, think_time_s, step_s, ceiling=ceiling)
        for f in STEP_FRACTIONS
    ]
    for f in KNEE_FRACTIONS:
        rate = f * p.saturation_rps
        if all(abs(rate - s.offered_rps) > MIN_STEP_GAP * rate for s in stages):
            stages.append(_stage(f"knee {f:g}x", rate, p, think_time_s, step_s))
    stages.sort(key=lambda stage: stage.offered_rps)
    return stages


def calibration_stages(p: Predictions, think_time_s: float, seconds: float, users: int):
    """Two stages. `service`: a few users, so requests seldom queue and each endpoint's time is
    its own. `target`: the target request rate, since CPU per request on shared cores grows
    with contention (it is not the same at a tenth of the load)."""
    rate = p.offered_rps_of(users, think_time_s)
    return [
        Stage("service", users, seconds, round(rate, 3), spawn_rate=users),
        _stage("target", p.offered_rps, p, think_time_s, seconds),
    ]


def soak_stages(p: Predictions, think_time_s: float, seconds: float) -> list[Stage]:
    """The target load, held."""
    return [_stage("soak", p.offered_rps, p, think_time_s, seconds)]


def light_stages(p: Predictions, think_time_s: float, seconds: float, users: int) -> list[Stage]:
    """A short light load that `make test` can afford: a check of the whole path, not of sizing."""
    users = max(1, users)
    rate = p.offered_rps_of(users, think_time_s)
    return [Stage("light", users, seconds, round(rate, 3), spawn_rate=users)]
