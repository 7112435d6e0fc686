"""Backups (pgBackRest): the WAL the archive takes at the target load and per day, the window a
restore can reach, and the backup bucket's size and growth."""

from __future__ import annotations

from ..registry import rule

SEGMENT_KB = 16384  # PostgreSQL's WAL segment: 16 MiB


@rule(
    "kB/s",
    "{offered_submissions_per_s}*{wal_kb_per_submission}",
    "Measured WAL per submission x the target's submissions.",
)
def archive_kb_per_s(v):
    """WAL the primary writes, and archive_command hands to pgBackRest, at the target load:
    every page submission's (reads write none)."""
    return v.offered_submissions_per_s * v.wal_kb_per_submission


@rule(
    "segments/min",
    "{archive_kb_per_s}*60/" + str(SEGMENT_KB),
    "PostgreSQL: archive_command runs once per 16 MiB segment.",
)
def archive_segments_per_min(v):
    """Segments archived per minute at the target load; archive_timeout adds one per timeout on
    an idle primary, almost empty and compressed to a few kB."""
    return v.archive_kb_per_s * 60 / SEGMENT_KB


@rule(
    "kB/s",
    "{archive_kb_per_s}*{wal_compressed_percent}/100",
    "pgBackRest compresses each segment (zstd) before it leaves the host.",
)
def archive_upload_kb_per_s(v):
    """What the archive sends to the bucket at the target load."""
    return v.archive_kb_per_s * v.wal_compressed_percent / 100


@rule(
    "MB/day",
    "{survey_starts_per_day}*{pages_per_survey}*{wal_kb_per_submission}"
    "*{wal_compressed_percent}/100/1024",
    "Measured WAL per submission x a day's submissions, compressed.",
)
def archive_mb_per_day(v):
    """Archived WAL a day of the planned traffic adds to the bucket."""
    raw_kb = v.survey_starts_per_day * v.pages_per_survey * v.wal_kb_per_submission
    return raw_kb * v.wal_compressed_percent / 100 / 1024


@rule(
    "MB/day",
    "{survey_starts_per_day}*{db_kb_per_survey}/1024",
    "Measured growth per survey x a day's surveys.",
)
def db_growth_mb_per_day(v):
    """How much the database grows in a day of the planned traffic."""
    return v.survey_starts_per_day * v.db_kb_per_survey / 1024


@rule(
    "days",
    "{backup_retention_full}*{full_backup_every_days}",
    "pgBackRest: expiring a full backup expires the WAL older than the oldest one kept.",
)
def restore_window_days(v):
    """How far back a restore can reach, at least: the oldest full backup kept is this old just
    before the next full one expires it."""
    return v.backup_retention_full * v.full_backup_every_days


@rule(
    "GB",
    "{db_size_gb}*{backup_compressed_percent}/100",
    "Measured compression of a full backup.",
)
def full_backup_gb(v):
    """One full backup in the bucket."""
    return v.db_size_gb * v.backup_compressed_percent / 100


@rule(
    "GB",
    "MIN({full_backup_gb},{full_backup_every_days}*{db_growth_mb_per_day}"
    "*{backup_compressed_percent}/100/1024)",
    "pgBackRest block incremental (repo1-block): a differential stores the blocks changed "
    "since its full backup.",
)
def diff_backup_gb(v):
    """The largest differential backup: the blocks the week's surveys added since the full one
    (answers are inserted, rarely rewritten), never more than a full backup."""
    grown = v.full_backup_every_days * v.db_growth_mb_per_day * v.backup_compressed_percent / 100
    return min(v.full_backup_gb, grown / 1024)


@rule(
    "GB",
    "({backup_retention_full}+1)*{full_backup_gb}"
    "+IF({full_backup_every_days}>1,{backup_retention_diff},0)*{diff_backup_gb}"
    "+({restore_window_days}+{full_backup_every_days})*{archive_mb_per_day}/1024",
    "pgBackRest expires the oldest full backup only once the new one is complete.",
)
def backup_bucket_gb(v):
    """The bucket at its fullest: one full backup more than kept (the newest completes before
    the oldest expires), the differentials kept, and the WAL since the oldest full one."""
    diffs = v.backup_retention_diff * v.diff_backup_gb if v.full_backup_every_days > 1 else 0
    wal_days = v.restore_window_days + v.full_backup_every_days
    return (
        (v.backup_retention_full + 1) * v.full_backup_gb
        + diffs
        + wal_days * v.archive_mb_per_day / 1024
    )


@rule(
    "GB/30 days",
    "30*{db_growth_mb_per_day}/1024*{backup_compressed_percent}/100*({backup_retention_full}+1)",
    "Each full backup kept tracks the database's size.",
)
def backup_bucket_growth_gb_per_30_days(v):
    """How much the bucket grows in a month as the database grows: every full backup kept
    grows with it. The WAL's share stays level at a steady traffic."""
    monthly = 30 * v.db_growth_mb_per_day / 1024 * v.backup_compressed_percent / 100
    return monthly * (v.backup_retention_full + 1)


@rule("backups", "{backup_retention_full}", "pgBackRest: repo1-retention-full.")
def postgresql_backup_retention_full(v):
    """Full backups the repository keeps (the role's repo1-retention-full)."""
    return v.backup_retention_full


@rule("backups", "{backup_retention_diff}", "pgBackRest: repo1-retention-diff.")
def postgresql_backup_retention_diff(v):
    """Differential backups the repository keeps (the role's repo1-retention-diff)."""
    return v.backup_retention_diff


@rule("days", "{full_backup_every_days}", "The full and differential timers' calendars.")
def postgresql_backup_every_days(v):
    """Days between full backups; the role's timers take a full backup on Sundays (7) or every
    day (1), and a differential on the days between."""
    return v.full_backup_every_days
