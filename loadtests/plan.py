"""What a load test run offers: its stages of simulated users, derived from the capacity model.

Pure functions over the model's values, so the report can recompute what each stage offered
and the tests can check the arithmetic without a fleet.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Locust request names, by the capacity model's endpoint whose service time they measure.
# A survey's review page counts as one of its pages (pages_per_survey includes it); the
# landing page, the POST that starts a response and the closing page are its other requests.
ENDPOINTS = {
    "page_get": ("page GET", "review GET"),
    "page_post": ("page POST", "review POST"),
    "start": ("landing GET", "start POST", "done GET"),
    "results": ("results GET",),
}
ENDPOINT_OF = {name: endpoint for endpoint, names in ENDPOINTS.items() for name in names}
SUBMISSIONS = ("page POST", "review POST")

# Step load: fractions of the predicted capacity; the ceiling is 1.2x.
STEP_FRACTIONS = (0.25, 0.5, 0.75, 1.0, 1.1, 1.2)
MAX_FRACTION = 1.2


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
    model: dict = field(default_factory=dict)  # the capacity model's values for the report

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


def seconds_per_request(values: dict, think_time_s: float) -> float:
    """A taker's cycle per request in the closed model: think time plus service time."""
    cycle = values["pages_per_survey"] * think_time_s + values["requests_per_survey"] * (
        values["mean_service_ms"] / 1000
    )
    return cycle / values["requests_per_survey"]


def users_for(rate_rps: float, values: dict, think_time_s: float) -> int:
    """Takers that offer `rate_rps` requests/s (Little's law: N = X x (Z + R))."""
    return max(1, round(rate_rps * seconds_per_request(values, think_time_s)))


def offered_rps(users: int, values: dict, think_time_s: float) -> float:
    return users / seconds_per_request(values, think_time_s)


def _stage(label, rate, values, think, seconds, spawn_rate=20.0, ceiling=math.inf) -> Stage:
    users = users_for(rate, values, think)
    while users > 1 and offered_rps(users, values, think) > ceiling:  # rounding up overshot
        users -= 1
    return Stage(label, users, seconds, round(offered_rps(users, values, think), 3), spawn_rate)


def step_stages(values: dict, think_time_s: float, step_s: float) -> list[Stage]:
    """The target load, then steps up to and a little past the predicted capacity."""
    capacity = values["capacity_rps"]
    target = values["offered_rps"]
    stages = [_stage("target", target, values, think_time_s, step_s)] if target < capacity else []
    ceiling = MAX_FRACTION * capacity
    stages += [
        _stage(f"{fraction:g}x", fraction * capacity, values, think_time_s, step_s, ceiling=ceiling)
        for fraction in STEP_FRACTIONS
    ]
    stages.sort(key=lambda stage: stage.offered_rps)
    return stages


def calibration_stages(values: dict, think_time_s: float, seconds: float, users: int):
    """Two stages. `service`: a few users, so requests seldom queue and each endpoint's time is
    its own. `target`: the target request rate, since CPU per request on shared cores grows
    with contention (it is not the same at a tenth of the load)."""
    rate = offered_rps(users, values, think_time_s)
    return [
        Stage("service", users, seconds, round(rate, 3), spawn_rate=users),
        _stage("target", values["offered_rps"], values, think_time_s, seconds),
    ]


def soak_stages(values: dict, think_time_s: float, seconds: float) -> list[Stage]:
    """The target load, held."""
    return [_stage("soak", values["offered_rps"], values, think_time_s, seconds)]


def light_stages(values: dict, think_time_s: float, seconds: float, users: int) -> list[Stage]:
    """A short light load that `make test` can afford: a check of the whole path, not of sizing."""
    users = max(1, users)
    rate = offered_rps(users, values, think_time_s)
    return [Stage("light", users, seconds, round(rate, 3), spawn_rate=users)]
