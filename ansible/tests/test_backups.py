"""Backups (roles/postgresql, pgBackRest): the primary archives every WAL segment into an
encrypted repository in a bucket of its own, behind TLS; the first replica takes the base
backups, from itself, with the primary's pgBackRest server starting and stopping them; its timers
take the next ones and verify the repository. Nothing else can reach the repository or the
pgBackRest servers."""

import json

import pytest

from loadtests.fleet import ROOT, vault
from provisioning import make

TIMERS = ("tally-backup-full.timer", "tally-backup-diff.timer", "tally-backup-verify.timer")


def _info(fleet, host):
    result = fleet.pgbackrest(host, "--output=json", "info")
    assert result.returncode == 0, result.stdout + result.stderr
    [stanza] = json.loads(result.stdout)
    return stanza


def test_the_repository_is_encrypted_and_holds_a_full_backup_and_the_wal(fleet):
    stanza = _info(fleet, fleet.backup_host())
    assert stanza["status"]["code"] == 0, stanza["status"]
    assert stanza["cipher"] == "aes-256-cbc"
    assert [b["type"] for b in stanza["backup"]][:1] == ["full"], stanza["backup"]
    [archive] = stanza["archive"]
    assert archive["min"], archive
    assert archive["max"] >= archive["min"], archive


def test_a_switched_segment_reaches_the_archive(fleet):
    primary = fleet.hosts("db_primary")[0]
    segment = fleet.psql(
        primary, "SELECT pg_walfile_name(pg_current_wal_lsn()) FROM (SELECT pg_switch_wal()) s"
    ).strip()
    # `check` forces a switch of its own and waits until that segment is in the repository;
    # the segment before it, switched above, is there by then too (archiving keeps order).
    checked = fleet.pgbackrest(primary, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    fetched = "/var/lib/postgresql/tally-archive-get-test"  # postgres's home: it writes there
    got = fleet.pgbackrest(primary, "archive-get", segment, fetched)
    assert got.returncode == 0, got.stdout + got.stderr
    fleet.exec(primary, "rm", "-f", fetched)


def test_the_backup_host_runs_the_timers_and_no_other_host_does(fleet):
    backup_host = fleet.backup_host()
    assert backup_host in fleet.hosts("db_replica"), "the test fleet backs up from a replica"
    for host in fleet.hosts("db"):
        enabled = fleet.run(host, "systemctl", "is-enabled", *TIMERS).stdout.split()
        expected = "enabled" if host == backup_host else "disabled"
        assert enabled == [expected] * len(TIMERS), (host, enabled)


def test_a_backup_on_the_replica_copies_its_files_from_the_replica(fleet):
    backup_host = fleet.backup_host()
    started = fleet.run(backup_host, "systemctl", "start", "tally-backup@incr.service")
    assert started.returncode == 0, started.stderr
    # From the standby, pgBackRest waits until it has replayed up to the backup's start on the
    # primary, then copies from it; without one (prefer) it warns and copies from the primary.
    log = fleet.exec(
        backup_host, "journalctl", "-u", "tally-backup@incr.service", "-o", "cat", "--no-pager"
    )
    run = log[log.rindex("backup command begin") :]
    assert "replay on the standby reached" in run, run[-3000:]
    assert "using primary instead" not in run, run[-3000:]
    stanza = _info(fleet, backup_host)
    assert stanza["backup"][-1]["type"] == "incr"
    assert stanza["backup"][-1]["label"] in run


def _verify(fleet):
    return fleet.run(
        fleet.backup_host(), "systemctl", "start", "tally-backup-verify.service", timeout=900
    )


# Runs on the S3 host as the backup bucket's owner (Swift's own API, no signing): lists the
# objects under a prefix, or deletes one. The key travels in the environment, never in argv.
_SWIFT = """
import os, sys, urllib.request
base = f"http://{sys.argv[1]}"
login = urllib.request.Request(f"{base}/auth/v1.0", headers={
    "X-Auth-User": os.environ["S3_USER"], "X-Auth-Key": os.environ["S3_KEY"]})
with urllib.request.urlopen(login) as r:
    token, url = r.headers["X-Auth-Token"], r.headers["X-Storage-Url"]
action, path = sys.argv[2], sys.argv[3]
if action == "list":
    req = urllib.request.Request(f"{url}/{path}", headers={"X-Auth-Token": token})
else:
    req = urllib.request.Request(f"{url}/{path}", method="DELETE", headers={"X-Auth-Token": token})
with urllib.request.urlopen(req) as r:
    print(r.read().decode())
"""


def _bucket(fleet, action, path):
    s3 = fleet.hosts("objectstore")[0]
    env = {
        "S3_USER": fleet.user("s3_backup"),
        "S3_KEY": vault(fleet.env)["vault_s3_backup_secret_key"],
    }
    endpoint = f"{fleet.address(s3)}:{fleet.port('s3')}"
    return fleet.exec(s3, "python3", "-c", _SWIFT, endpoint, action, path, env=env)


def test_verify_fails_on_a_damaged_backup_and_passes_once_it_is_expired(fleet):
    assert _verify(fleet).returncode == 0
    backup_host = fleet.backup_host()
    # A backup of its own to damage: nothing else depends on an incremental taken last.
    fleet.exec(backup_host, "systemctl", "start", "tally-backup@incr.service")
    newest = _info(fleet, backup_host)["backup"][-1]
    assert newest["type"] == "incr"
    bucket = fleet.setting("tally_backup_bucket")
    prefix = f"{fleet.env}/backup/{fleet.setting('postgresql_backup_stanza')}/{newest['label']}/"
    objects = _bucket(fleet, "list", f"{bucket}?prefix={prefix}").split()
    damaged = next(o for o in objects if "/bundle/" in o or "/pg_data/" in o)
    _bucket(fleet, "delete", f"{bucket}/{damaged}")

    failed = _verify(fleet)
    assert failed.returncode != 0, "verify must fail the unit on a missing file"
    report = fleet.exec(
        backup_host, "journalctl", "-u", "tally-backup-verify.service", "-o", "cat", "-n", "30"
    )
    assert f"backup: {newest['label']}, status: invalid" in report, report

    expired = fleet.pgbackrest(backup_host, "expire", f"--set={newest['label']}")
    assert expired.returncode == 0, expired.stdout + expired.stderr
    assert _verify(fleet).returncode == 0


@pytest.mark.parametrize("source_group", ["web", "lb"])
def test_only_database_hosts_reach_the_repository_and_the_pgbackrest_servers(fleet, source_group):
    primary = fleet.hosts("db_primary")[0]
    s3 = fleet.hosts("objectstore")[0]
    backup_host = fleet.backup_host()
    assert fleet.connects(backup_host, fleet.address(primary), fleet.port("pgbackrest"))
    assert fleet.connects(backup_host, fleet.address(s3), fleet.port("s3_https"))
    source = fleet.hosts(source_group)[0]
    assert not fleet.connects(source, fleet.address(primary), fleet.port("pgbackrest"))
    assert not fleet.connects(source, fleet.address(s3), fleet.port("s3_https"))


MARKER = "tally_restore_marker"


def _archive_now(fleet, primary):
    """Switch to a new WAL segment and wait until the one just closed is in the repository."""
    checked = fleet.pgbackrest(primary, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _restore(fleet, target):
    run = make("restore", f"ENV={fleet.env}", f"TARGET={target}")
    assert run.returncode == 0, run.report()
    return json.loads((ROOT / "build" / fleet.env / "restore" / "restore.json").read_text())


def test_a_restore_to_a_time_brings_back_a_dropped_table_and_latest_does_not(fleet):
    """The issue's story: a marker row written, then the table dropped by mistake. A restore to
    a time between the two has the table and the row; a restore of everything does not."""
    primary = fleet.hosts("db_primary")[0]
    scratch = fleet.hosts("restore")[0]
    fleet.psql(primary, f"DROP TABLE IF EXISTS {MARKER}; CREATE TABLE {MARKER} (note text)")
    fleet.psql(primary, f"INSERT INTO {MARKER} VALUES ('written before the drop')")
    # Read after the insert committed, before the drop began: the drop commits later than this.
    between = fleet.psql(primary, "SELECT clock_timestamp()::text").strip()
    fleet.psql(primary, f"DROP TABLE {MARKER}")
    _archive_now(fleet, primary)

    report = _restore(fleet, between)
    assert report["host"] == scratch
    assert report["last_replayed_commit"] <= between, report
    rows = fleet.psql(scratch, f"SELECT note FROM {MARKER}").split("\n")
    assert rows[:1] == ["written before the drop"], rows
    # The scratch server is open for writes and archives nothing into the repository.
    assert fleet.psql(scratch, "SELECT pg_is_in_recovery()").strip() == "f"
    assert fleet.psql(scratch, "SHOW archive_mode").strip() == "off"

    latest = _restore(fleet, "latest")
    assert latest["last_replayed_commit"] > between, latest
    assert fleet.psql(scratch, f"SELECT to_regclass('{MARKER}') IS NULL").strip() == "t"


def test_a_restore_to_a_target_that_is_not_a_time_is_refused_before_any_change(fleet):
    wrong = make("restore", f"ENV={fleet.env}", "TARGET=yesterday")
    assert wrong.returncode != 0
    assert "TARGET must be latest or a time" in wrong.output, wrong.output[-3000:]
    assert wrong.changed_tasks() == []
