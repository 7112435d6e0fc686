"""A new primary (ansible/failover.yml): under a light load with a ledger, `make switchover`
promotes the first replica and rejoins the old primary with pg_rewind, then switches back
(loadtests/drills.py, the `switchover` drill). Every acknowledged write survives both, every
replica streams from the primary afterwards, and the inventory names the primary it started
with. A failover that cannot fence the primary is refused before any change."""

from loadtests import drills
from provisioning import make
from test_operations import _check


def test_a_switchover_there_and_back_under_light_load(fleet, tmp_path):
    _check(drills.run(fleet, ["switchover"], tmp_path, light=True), "switchover")


def test_a_failover_to_a_host_that_is_not_a_replica_is_refused_before_any_change(fleet):
    primary = fleet.hosts("db_primary")[0]
    refused = make("failover", f"ENV={fleet.env}", f"NEW={primary}")
    assert refused.returncode != 0
    assert "NEW must name the replica to promote" in refused.output, refused.output[-3000:]
    assert refused.changed_tasks() == []
