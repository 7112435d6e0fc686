"""Reconcile the run's ledger of acknowledged writes with the database, on the primary and then
on each replica once it has replayed everything the primary had at the end of the run."""

from __future__ import annotations

import csv
import re
import time
import uuid
from pathlib import Path

from loadtests.fleet import Fleet

CATCH_UP_S = 60

MISSING_ANSWERS = """
SELECT count(*) FROM unnest('{ids}'::uuid[]) AS ledger(id)
WHERE NOT EXISTS (SELECT 1 FROM surveys_answer a WHERE a.submission_id = ledger.id);
"""
MISSING_COMPLETIONS = """
SELECT count(*) FROM unnest('{tokens}'::text[]) AS ledger(token)
WHERE NOT EXISTS (
    SELECT 1 FROM surveys_response r WHERE r.token = ledger.token AND r.completed_at IS NOT NULL
);
"""
HELD_ANSWERS = """
SELECT ledger.id FROM unnest('{ids}'::uuid[]) AS ledger(id)
WHERE EXISTS (SELECT 1 FROM surveys_answer a WHERE a.submission_id = ledger.id);
"""


def read(path: Path) -> tuple[list[str], list[str]]:
    """Page submission ids and completed response tokens the site acknowledged."""
    pages, completed = [], []
    with path.open() as f:
        for row in csv.DictReader(f):
            if row["kind"] == "page":
                pages.append(str(uuid.UUID(row["id"])))
            elif re.fullmatch(r"[A-Za-z0-9_-]{16,32}", row["id"]):
                completed.append(row["id"])
            else:
                raise ValueError(f"{path}: not a resume token: {row['id']!r}")
    return pages, completed


def acknowledged_pages(path: Path) -> dict[str, float]:
    """Each acknowledged page submission's id, and when the site acknowledged it (epoch s)."""
    pages, _ = read(path)  # checks every id
    with path.open() as f:
        times = [float(row["time"]) for row in csv.DictReader(f) if row["kind"] == "page"]
    return dict(zip(pages, times, strict=True))


def held(fleet: Fleet, host: str, pages: list[str]) -> set[str]:
    """The page submissions (ids from read()) whose answers the database on host holds."""
    sql = HELD_ANSWERS.format(ids="{" + ",".join(pages) + "}")
    return set(fleet.psql(host, sql).split())


def stale_reads(path: Path) -> tuple[int, int]:
    """(re-reads, stale ones) of rereads.csv: a taker's reads of the page it had just saved."""
    if not path.exists():
        return 0, 0
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return len(rows), sum(bool(row["stale"].strip()) for row in rows)


def _missing(fleet: Fleet, host: str, pages: list[str], completed: list[str]) -> tuple[int, int]:
    # read() admits only uuids and URL-safe base64 tokens: nothing to quote inside the arrays.
    sql = MISSING_ANSWERS.format(ids="{" + ",".join(pages) + "}") + MISSING_COMPLETIONS.format(
        tokens="{" + ",".join(completed) + "}"
    )
    answers, completions = fleet.psql(host, sql).split()
    return int(answers), int(completions)


def _wait_for_replicas(fleet: Fleet, primary: str) -> float:
    """Seconds until every replica replayed the primary's current WAL position."""
    started = time.monotonic()
    lsn = fleet.psql(primary, "SELECT pg_current_wal_lsn();").strip()
    sql = (
        "SELECT count(*) FROM pg_stat_replication "
        f"WHERE replay_lsn IS NULL OR replay_lsn < '{lsn}'::pg_lsn;"
    )
    while fleet.psql(primary, sql).strip() != "0":
        if time.monotonic() - started > CATCH_UP_S:
            raise RuntimeError(f"replicas did not replay {lsn} within {CATCH_UP_S} s")
        time.sleep(0.5)
    return time.monotonic() - started


def reconcile(fleet: Fleet, ledger_csv: Path) -> dict:
    pages, completed = read(ledger_csv)
    primary = fleet.hosts("db_primary")[0]
    missing_pages, missing_completed = _missing(fleet, primary, pages, completed)
    result = {
        "acknowledged": len(pages),
        "completed": len(completed),
        "missing_primary": missing_pages,
        "missing_completed": missing_completed,
        "missing_replica": 0,
        "replica_catch_up_s": round(_wait_for_replicas(fleet, primary), 2),
    }
    for replica in fleet.hosts("db_replica"):
        result["missing_replica"] += sum(_missing(fleet, replica, pages, completed))
    return result
