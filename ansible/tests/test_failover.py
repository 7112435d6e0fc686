"""A new primary (ansible/failover.yml). `make drills` runs the `switchover`, `failover-async`
and `failover-sync` drills under the target load, each with the provisions that follow; here, a
request that names a host that is not a replica is refused before any change, and the light
`failover-sync` drill crashes the primary, fails over and switches back without them (the
fleet's settings are made whole again by its `make replication`)."""

from loadtests import drills
from provisioning import check_drill, make


def test_a_failover_to_a_host_that_is_not_a_replica_is_refused_before_any_change(fleet):
    primary = fleet.hosts("db_primary")[0]
    for target in ("failover", "switchover"):
        refused = make(target, f"ENV={fleet.env}", f"NEW={primary}")
        assert refused.returncode != 0
        assert "NEW must name the replica to promote" in refused.output, refused.output[-3000:]
        assert refused.changed_tasks() == []
    assert fleet.psql(primary, "SELECT pg_is_in_recovery()").strip() == "f"


def test_a_crashed_primary_fails_over_under_light_load_and_loses_no_acknowledged_write(
    fleet, tmp_path
):
    before = fleet.hosts("db_primary")
    summary = drills.run(
        fleet,
        ["failover-sync"],
        tmp_path,
        light=True,
        notes={"failover-sync": {"_provision": False}},
    )
    check_drill(summary, "failover-sync")
    figures = summary["drills"]["failover-sync"]["figures"]
    assert figures["synchronous_standbys"] == 1
    assert figures["missing"] == 0
    assert fleet.hosts("db_primary") == before
