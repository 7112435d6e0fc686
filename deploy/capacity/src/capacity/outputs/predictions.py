"""Typed predictions: what the load tests plan their stages by and judge the fleet against."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace

from ..rules import throughput


@dataclass(frozen=True)
class Predictions:
    """The model's predictions for one environment. Every field but `calibrated` and
    `bottleneck` is the model value of the same name (deploy/capacity/README.md explains each);
    the methods apply the model's closed-model rules to other takers and think times."""

    calibrated: bool  # service times measured by `make calibrate`, not placeholders
    bottleneck: str  # what runs out first: "workers", "web cores" or "shared cores"
    # Capacity: at the target utilisation, and at saturation (the knee, 100% of the bottleneck).
    capacity_rps: float
    worker_capacity_rps: float
    cpu_capacity_rps: float
    saturation_rps: float
    capacity_submissions_per_s: float
    capacity_db_transactions_per_s: float
    primary_db_transactions_per_s: float
    active_server_connections: float
    pooled_server_connections: int  # per database server, the pools at their cap
    target_utilisation: float
    latency_p95_ms: float
    web_hosts: int
    web_hosts_needed: int
    web_worker_slots: int
    # The target load (closed model).
    concurrent_takers: float
    think_time_s: float
    survey_cycle_s: float
    offered_rps: float
    offered_submissions_per_s: float
    offered_db_transactions_per_s: float
    offered_primary_db_transactions_per_s: float
    offered_active_server_connections: float
    offered_utilisation: float
    offered_surveys_per_hour: float
    # The survey mix and the service times it was predicted from.
    pages_per_survey: float
    requests_per_survey: float
    results_views_per_survey: float
    mean_service_ms: float
    page_get_ms: float
    page_post_ms: float
    start_ms: float
    results_ms: float
    db_transaction_ms: float
    cpu_ms_per_request: float
    cpu_idle_cores: float
    shared_cores: float

    @classmethod
    def of(cls, values: dict, calibrated: bool) -> Predictions:
        if values["cpu_capacity_rps"] < values["worker_capacity_rps"]:
            bottleneck = "shared cores"
        elif values["host_cpu_capacity_rps"] < values["host_worker_capacity_rps"]:
            bottleneck = "web cores"
        else:
            bottleneck = "workers"
        names = [f.name for f in dataclasses.fields(cls)][2:]
        return cls(calibrated, bottleneck, **{name: values[name] for name in names})

    def cycle_s(self, think_time_s: float) -> float:
        """A taker's survey cycle at another think time (the model's survey_cycle_s rule)."""
        return throughput.survey_cycle_s(
            SimpleNamespace(
                pages_per_survey=self.pages_per_survey,
                think_time_s=think_time_s,
                requests_per_survey=self.requests_per_survey,
                mean_service_ms=self.mean_service_ms,
            )
        )

    def offered_rps_of(self, takers: float, think_time_s: float) -> float:
        """Requests/s that `takers` send at that think time (the model's offered_rps rule)."""
        return throughput.offered_rps(
            SimpleNamespace(
                concurrent_takers=takers,
                requests_per_survey=self.requests_per_survey,
                survey_cycle_s=self.cycle_s(think_time_s),
            )
        )

    def takers_for(self, rate_rps: float, think_time_s: float) -> int:
        """Takers that send `rate_rps` at that think time (at least one)."""
        return max(1, round(rate_rps / self.offered_rps_of(1, think_time_s)))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
