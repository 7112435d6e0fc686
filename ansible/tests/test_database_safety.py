"""Provisioning never destroys a database (ansible/check-db.yml, roles/postgresql/tasks/
replica.yml). A replica promoted by hand and written to stops the next provision before any
change, with what it is and what to do, and keeps its writes. Removing its cluster, as the
message says, lets the provision after clone it from the primary again, as a standby through
its own slot: the fleet is whole afterwards for the other tests."""

import time

from provisioning import make

ENV = "test"
MARKER = "tally_written_after_the_promotion"


def _in_recovery(fleet, host):
    return fleet.psql(host, "SELECT pg_is_in_recovery()").strip() == "t"


def test_a_promoted_replica_stops_the_provision_and_keeps_its_writes(fleet):
    replica = fleet.replicas()[-1]
    host = replica["host"]
    assert fleet.psql(host, "SELECT pg_promote()").strip() == "t"
    fleet.psql(host, f"CREATE TABLE {MARKER} (note text); INSERT INTO {MARKER} VALUES ('kept')")

    refused = make("provision", f"ENV={ENV}")
    assert refused.returncode != 0, refused.output[-3000:]
    assert f"{host} (system" in refused.output, refused.output[-3000:]
    assert "is a replica in the inventory but is not a standby" in refused.output
    assert "pg_dropcluster --stop" in refused.output
    assert refused.changed_tasks() == [], "it stopped before any change"
    assert not _in_recovery(fleet, host)
    assert fleet.psql(host, f"SELECT note FROM {MARKER}").strip() == "kept"

    # What the message says to do once what only this host holds is saved.
    version = fleet.psql(host, "SHOW server_version_num").strip()[:2]
    fleet.exec(host, "pg_dropcluster", "--stop", version, "main")
    cloned = make("provision", f"ENV={ENV}")
    assert cloned.returncode == 0, cloned.report()
    assert _in_recovery(fleet, host)
    assert fleet.psql(host, f"SELECT to_regclass('{MARKER}') IS NULL").strip() == "t"
    deadline = time.time() + 60
    while time.time() < deadline:
        receiver = fleet.sql(host, "SELECT status, slot_name FROM pg_stat_wal_receiver")
        if receiver == [["streaming", replica["name"]]]:
            break
        time.sleep(1)
    assert receiver == [["streaming", replica["name"]]]
