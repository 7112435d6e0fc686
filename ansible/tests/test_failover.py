"""A new primary (ansible/failover.yml). `make drills` runs the `switchover` drill under the
target load (there and back, with a ledger); here, a request that names a host that is not a
replica is refused before any change, and so is a switchover whose candidate is the primary."""

from provisioning import make


def test_a_failover_to_a_host_that_is_not_a_replica_is_refused_before_any_change(fleet):
    primary = fleet.hosts("db_primary")[0]
    for target in ("failover", "switchover"):
        refused = make(target, f"ENV={fleet.env}", f"NEW={primary}")
        assert refused.returncode != 0
        assert "NEW must name the replica to promote" in refused.output, refused.output[-3000:]
        assert refused.changed_tasks() == []
    assert fleet.psql(primary, "SELECT pg_is_in_recovery()").strip() == "f"
