"""Replicas counted for real, workers per core, the typed predictions, and the example plan for
the case study's peak."""

from __future__ import annotations

import dataclasses

import pytest

from capacity import Predictions, model, predictions
from capacity.inputs import inventory_counts, load_reference
from capacity.outputs.markdown import markdown

from .test_model import small


@pytest.mark.parametrize("replicas", [0, 1, 2])
def test_every_replica_gets_a_pool_on_every_web_host_and_its_own_connections(replicas):
    m = model.evaluate(model.load("local", counts={"db_replicas": replicas}))
    v = m.values
    assert m.inputs.db_replicas == replicas
    assert v["db_entries"] == 1 + replicas
    # Each server (the primary, each replica) serves one pool per web host, at its cap...
    assert v["pooled_server_connections"] == m.inputs.web_hosts * v["pgbouncer_max_db_connections"]
    assert v["pooled_server_connections_total"] == (1 + replicas) * v["pooled_server_connections"]
    # ...and max_connections, the same on every server, leaves room for it.
    assert v["pooled_server_connections"] <= v["pool_connection_room"]
    # Every worker keeps a client connection per entry, twice over during a reload.
    slots = v["web_worker_slots"]
    clients = (2 * slots * (1 + replicas) + m.inputs.pool_admin_clients) * 1.25
    assert v["pgbouncer_max_client_conn"] == pytest.approx(clients, abs=1)
    assert m.failures() == []


def test_replicas_take_the_reads_off_the_primary():
    # small(): 350 transactions/s at capacity; 60% on the primary when there are replicas.
    # With replicas, every server also answers the router's status queries (counted below).
    none, one, two = (model.evaluate(small(db_replicas=n)).values for n in (0, 1, 2))
    status = one["router_status_queries_per_s"]
    assert none["primary_db_transactions_per_s"] == pytest.approx(350)
    assert none["replica_db_transactions_per_s"] == 0
    assert one["primary_db_transactions_per_s"] == pytest.approx(210 + status)
    assert one["replica_db_transactions_per_s"] == pytest.approx(140 + status)
    assert two["primary_db_transactions_per_s"] == pytest.approx(210 + status)
    assert two["replica_db_transactions_per_s"] == pytest.approx(70 + status)  # each
    assert two["busiest_server_active_connections"] == pytest.approx((210 + status) * 2 / 1000)
    # A client connection per entry, per worker: the file limits grow with the entries.
    assert two["pgbouncer_max_client_conn"] > one["pgbouncer_max_client_conn"]


def test_the_read_routers_status_queries_are_counted_on_every_server():
    # Each gunicorn process asks each server at most once per status TTL; none without replicas.
    none = model.evaluate(small(db_replicas=0, replica_status_ttl_s=0.2)).values
    fast = model.evaluate(small(db_replicas=2, replica_status_ttl_s=0.2)).values
    slow = model.evaluate(small(db_replicas=2, replica_status_ttl_s=1)).values
    assert none["router_status_queries_per_s"] == 0
    processes = fast["web_hosts"] * fast["app_workers"]
    assert fast["router_status_queries_per_s"] == pytest.approx(processes * 5)
    assert slow["router_status_queries_per_s"] == pytest.approx(processes)
    assert fast["offered_primary_db_transactions_per_s"] - slow[
        "offered_primary_db_transactions_per_s"
    ] == pytest.approx(processes * 4)
    # The app gets the same TTL the model counted with.
    assert model.evaluate(small(replica_status_ttl_s=1)).ansible_vars()[
        "app_replica_status_ttl"
    ] == pytest.approx(1)
    with pytest.raises(ValueError, match="replica_status_ttl_s must be above 0"):
        small(replica_status_ttl_s=0)


def test_a_busy_primary_fails_its_concurrency_check_with_the_numbers():
    heavy = small(db_replicas=2, db_transaction_ms=20, db_cores=1, min_server_pool=5)
    failures = model.evaluate(heavy).failures()
    message = next(f for f in failures if f.startswith("db_concurrency_fits_cores"))
    assert "busiest database server" in message
    assert "on each of 2 replicas" in message


def test_the_inventory_counts_replicas(tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  children:\n    web: {hosts: {web1: {}}}\n    lb: {hosts: {lb1: {}}}\n"
        "    db:\n      children:\n        db_primary: {hosts: {db1: {}}}\n"
        "        db_replica: {hosts: {db2: {}, db3: {}}}\n"
    )
    assert inventory_counts(inventory) == {"lb_hosts": 1, "web_hosts": 1, "db_replicas": 2}


def test_workers_per_core_defaults_to_gunicorns_rule_and_ram_still_bounds_it():
    # 2 x 2 cores + 1 = 5 (RAM holds 8), as gunicorn recommends.
    assert model.evaluate(small()).values["app_workers"] == 5
    # An I/O-bound app: 8 per core would be 17, but (2048 - 448) / 200 MB holds 8 workers.
    assert model.evaluate(small(workers_per_core=8)).values["app_workers"] == 8
    roomy = model.evaluate(small(workers_per_core=8, web_ram_mb=8192)).values
    assert roomy["app_workers"] == 17
    # More workers mean more throughput while the workers are the bound...
    assert roomy["host_capacity_rps"] == pytest.approx(17 * 0.5 / 0.02)
    # ...but not past the host's cores once its CPU time per request is known: 2 x 0.5 / 5 ms.
    cpu = model.evaluate(small(workers_per_core=8, web_ram_mb=8192, web_cpu_ms_per_request=5))
    assert cpu.values["host_capacity_rps"] == pytest.approx(200)
    assert cpu.values["worker_saturation_rps"] == pytest.approx(2 * 2 * 1000 / 5)
    assert cpu.predictions().bottleneck == "web cores"
    with pytest.raises(ValueError, match="workers_per_core must be above 0"):
        small(workers_per_core=0)


def test_predictions_are_typed_and_carry_both_capacities():
    p = model.evaluate(small()).predictions()
    assert isinstance(p, Predictions)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.capacity_rps = 1  # type: ignore[misc]
    # At the target utilisation (0.5) and at saturation (every worker busy).
    assert p.capacity_rps == pytest.approx(250)
    assert p.saturation_rps == pytest.approx(500)
    assert p.bottleneck == "workers"
    # The closed model at another think time, from the model's own rules.
    assert p.cycle_s(10) == pytest.approx(p.survey_cycle_s)
    assert p.offered_rps_of(1000, 10) == pytest.approx(p.offered_rps)
    assert p.offered_rps_of(1000, 5) == pytest.approx(10000 / (4 * 5 + 0.2))
    assert p.takers_for(p.offered_rps, 10) == 1000
    shared = model.evaluate(small(shared_cores=2, cpu_ms_per_request=8, cpu_idle_cores=0.2))
    assert shared.predictions().saturation_rps == pytest.approx(1.8 * 1000 / 8)
    assert shared.predictions().bottleneck == "shared cores"
    assert predictions("local", db_replicas=2).pooled_server_connections > 0


def test_the_example_plans_the_case_studys_peak():
    m = model.evaluate(model.load("example"))
    v = m.values
    assert m.failures() == []
    # The target: about 1,250 requests/s from about 50,000 takers an hour.
    assert v["offered_rps"] == pytest.approx(1250, rel=0.01)
    assert v["offered_surveys_per_hour"] == pytest.approx(50000, rel=0.02)
    # Enough web hosts, and one more to survive the loss of a host.
    assert v["web_hosts_needed"] < m.inputs.web_hosts
    assert v["capacity_rps"] >= v["offered_rps"]
    source, reference = load_reference("example")
    assert "Caktus" in source
    assert {r.output for r in reference} >= {
        "offered_rps",
        "web_hosts_needed",
        "offered_primary_db_transactions_per_s",
    }
    text = markdown("example", m, source, reference)
    for figure in ("web_hosts_needed", "pgbouncer_default_pool_size", "postgresql_max_connections"):
        assert f"| `{figure}` |" in text.split("## Outputs")[0]
    for value in ("| 16 |", "| 9500 |", "| 1250 |"):
        assert value in text
