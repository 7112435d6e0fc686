"""Process-wide view of the replicas: streaming state, replay, lag, and a circuit breaker."""

import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.db import DatabaseError, OperationalError, connections

from routing import PRIMARY, lsn

logger = logging.getLogger("tally.routing")

# Both status queries carry the comment /* tally:router-status */ after their SELECT, where
# pg_stat_statements keeps it (it drops what comes before a statement's first token): the load
# tests count the router's queries on each server by it (loadtests/samplers.py).
# One round trip per replica and status TTL. Health comes from the WAL receiver and the
# replica's identity, not from received == replayed: a replica whose receiver died has replayed
# all it received and looks current by its own numbers. pg_stat_wal_receiver shows its columns
# only to roles with pg_read_all_stats; to others they read NULL.
STATUS_TAG = "/* tally:router-status */"

STATUS_SQL = f"""
SELECT {STATUS_TAG} pg_is_in_recovery(),
       pg_last_wal_replay_lsn()::text,
       COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float8,
       (SELECT system_identifier::text FROM pg_control_system()),
       r.pid, r.status, r.received_tli, r.slot_name
FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true
"""  # noqa: S608 (only the constant tag is formatted in)

# One cheap round trip on the primary per status TTL: its WAL position, system and timeline
# (the first 8 hex digits of a WAL file name), and the slots it has given up on. Replicas are
# compared with these, not with what this process happens to remember, so a worker that was
# just recycled judges them as an old one does.
PRIMARY_SQL = f"""
SELECT {STATUS_TAG} pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn()::text END,
       CASE WHEN NOT pg_is_in_recovery() THEN pg_walfile_name(pg_current_wal_lsn()) END,
       (SELECT system_identifier::text FROM pg_control_system()),
       ARRAY(SELECT slot_name::text FROM pg_replication_slots WHERE wal_status = 'lost')
"""  # noqa: S608 (only the constant tag is formatted in)

_UNCHECKED = "not checked yet"

# Primary positions remembered for the lag in seconds; TTL 0 (the tests) must not grow it forever.
_HISTORY_LIMIT = 1024


class DatabaseUnreachable(OperationalError):
    """A replica's probe failed while the primary's breaker is open (its probe failed too).

    Raised instead of falling back to the primary: it did not answer within its breaker's
    window either, and one more wait (pgbouncer's query_wait_timeout) would most likely bring the
    same error, later. Measured on a web host cut off from the database (make drill
    NAME=web-db-cut): a page GET waited on the primary's probe, each replica's, then the primary,
    20 s in all, and gunicorn killed the worker. The app answers this, like any OperationalError,
    with a 503 and Retry-After (tally.middleware)."""


@dataclass
class ReplicaStatus:
    """The last known state of one replica alias."""

    alias: str
    checked_at: float = float("-inf")
    replay_lsn: int = 0
    lag_seconds: float = 0.0
    behind_bytes: int = 0
    usable: bool = False
    reason: str | None = _UNCHECKED
    down_until: float = float("-inf")


@dataclass
class PrimaryStatus:
    """What the replicas are judged against: the primary's identity, position and lost slots."""

    checked_at: float = float("-inf")
    down_until: float = float("-inf")
    reachable: bool = False
    system_identifier: str | None = None
    timeline: int | None = None
    lost_slots: frozenset = frozenset()


class ReplicaPool:
    """Chooses a replica for a read: streaming, not lagging, and past the client's WAL floor."""

    def __init__(
        self,
        aliases,
        *,
        status_ttl,
        retry_seconds,
        max_lag_seconds,
        max_lag_bytes,
        clock=time.monotonic,
    ):
        self._replicas = [ReplicaStatus(alias) for alias in aliases]
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self.status_ttl = status_ttl
        self.retry_seconds = retry_seconds
        self.max_lag_seconds = max_lag_seconds
        self.max_lag_bytes = max_lag_bytes
        self._clock = clock
        self.primary = PrimaryStatus()
        # (first seen, position) of the primary, positions increasing: when the primary passed
        # a position tells how long a replica that has not replayed it has been behind.
        self._history = deque(maxlen=_HISTORY_LIMIT)

    @property
    def aliases(self):
        return [replica.alias for replica in self._replicas]

    @property
    def primary_lsn(self):
        """The highest primary position this process has seen (0 before the first)."""
        return self._history[-1][1] if self._history else 0

    def choose(self, floor=None):
        """Return a usable replica alias that has replayed past `floor`, or None.

        At most one replica's probe may fail per choice: once one has, replicas whose status is
        stale are passed over rather than asked in turn, each at the cost of a pgbouncer wait
        (a web host cut off from the database would otherwise wait once per replica, then on
        the primary).
        If the primary's probe has failed too, in this choice or within its breaker's
        retry_seconds, DatabaseUnreachable is raised."""
        count = len(self._replicas)
        if not count:
            return None
        start = next(self._turn)
        failed = set()  # PRIMARY and the replica aliases whose probes failed in this choice
        for offset in range(count):
            replica = self._replicas[(start + offset) % count]
            if failed - {PRIMARY} and self._stale(replica):
                continue
            if self._refresh_if_stale(replica, failed) and (
                floor is None or replica.replay_lsn >= floor
            ):
                return replica.alias
        if failed - {PRIMARY} and self._clock() < self.primary.down_until:
            raise DatabaseUnreachable(
                "neither the primary nor a replica answered: "
                + ", ".join(sorted(failed - {PRIMARY}))
            )
        return None

    def note_primary_lsn(self, position):
        """Remember how far the primary has got, as read by the status probe or after a write."""
        now = self._clock()
        with self._lock:
            if position > self.primary_lsn:
                self._history.append((now, position))
            # The newest position older than the lag bound is kept: it shows whether a replica
            # that has not replayed anything newer was current back then.
            while len(self._history) > 1 and now - self._history[1][0] > self.max_lag_seconds:
                self._history.popleft()

    def trip(self, alias, reason):
        """Take a replica out of rotation for `retry_seconds` after it failed."""
        replica = self._find(alias)
        replica.usable = False
        replica.reason = f"{reason}; not tried again for {self.retry_seconds}s"
        replica.down_until = self._clock() + self.retry_seconds
        replica.checked_at = float("-inf")
        logger.warning(
            "replica %s is unavailable (%s); reads fall back to the primary for %ss",
            alias,
            reason,
            self.retry_seconds,
        )
        with contextlib.suppress(DatabaseError):
            connections[alias].close()

    def status(self, alias, *, refresh=True):
        """Return the last known status of a replica, refreshing it if it is stale (unless
        `refresh` is false)."""
        replica = self._find(alias)
        if refresh:
            self._refresh_if_stale(replica)
        return replica

    def _find(self, alias):
        for replica in self._replicas:
            if replica.alias == alias:
                return replica
        raise KeyError(alias)

    def _stale(self, replica):
        """Whether using the replica would first need a probe."""
        now = self._clock()
        return now >= replica.down_until and now - replica.checked_at >= self.status_ttl

    def _refresh_if_stale(self, replica, failed=None):
        """Return whether a replica is usable, asking it again if its state is older than TTL.
        The aliases whose probes failed are added to `failed`."""
        now = self._clock()
        if now < replica.down_until:
            return False
        if now - replica.checked_at >= self.status_ttl:
            answered = {PRIMARY: self._probe_primary(now), replica.alias: self._probe(replica, now)}
            if failed is not None:
                failed.update(alias for alias, ok in answered.items() if not ok)
        return replica.usable

    def _probe_primary(self, now):
        """Refresh what the replicas are judged against, once per status TTL. Return False if
        the primary did not answer."""
        primary = self.primary
        if now - primary.checked_at < self.status_ttl or now < primary.down_until:
            return True
        try:
            in_recovery, position, walfile, system_identifier, lost = self._fetch(
                PRIMARY, PRIMARY_SQL
            )
        except DatabaseError as exc:
            # Like a replica's breaker: a dead primary costs one timeout per interval, not one
            # per read. Meanwhile replicas are judged without it (see _problem).
            primary.reachable = False
            primary.down_until = now + self.retry_seconds
            logger.warning(
                "cannot read the primary's position (%s); replicas are judged by it as last seen "
                "for %ss",
                exc.__class__.__name__,
                self.retry_seconds,
            )
            return False
        primary.checked_at = now
        primary.reachable = not in_recovery
        if in_recovery:
            return True
        primary.system_identifier = system_identifier
        primary.timeline = int(walfile[:8], 16)
        primary.lost_slots = frozenset(lost)
        self.note_primary_lsn(lsn.parse(position) or 0)
        return True

    def _probe(self, replica, now):
        """Ask a replica for its state and decide whether it may serve reads. Return False if
        it did not answer."""
        try:
            in_recovery, replay_text, replay_age, system_identifier, *receiver = self._fetch(
                replica.alias, STATUS_SQL
            )
        except DatabaseError as exc:
            self.trip(replica.alias, exc.__class__.__name__)
            return False
        replica.checked_at = now
        replica.replay_lsn = lsn.parse(replay_text) or 0
        replica.behind_bytes = max(0, self.primary_lsn - replica.replay_lsn)
        replica.lag_seconds = self._lag_seconds(replica.replay_lsn, replay_age, now)
        problem = self._problem(replica, in_recovery, system_identifier, *receiver)
        if problem and (replica.usable or replica.reason == _UNCHECKED):
            logger.warning("replica %s skipped: %s", replica.alias, problem)
        elif not problem and not replica.usable:
            logger.info("replica %s is in rotation", replica.alias)
        replica.usable = problem is None
        replica.reason = problem
        return True

    def _fetch(self, alias, sql):
        """Run one status query on `alias` and return its row."""
        with connections[alias].cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()

    def _lag_seconds(self, replay_lsn, replay_age, now):
        """How long the primary has had WAL that this replica has not replayed."""
        with self._lock:
            history = list(self._history)
        newer = [seen for seen, position in history if position > replay_lsn]
        if not newer:
            return 0.0
        behind_for = now - newer[0]
        if len(newer) < len(history) or behind_for > self.max_lag_seconds:
            return behind_for
        # This process has not watched long enough to see when the primary passed the replica
        # (a worker just recycled): the age of the last replayed transaction bounds it from
        # above, and erring high only sends reads to the primary for one status interval.
        return max(behind_for, replay_age)

    def _problem(self, replica, in_recovery, system_identifier, pid, receiver, timeline, slot):
        """Return why a replica must not serve reads, or None."""
        primary = self.primary
        if not in_recovery:
            return "it is not in recovery, so it cannot be trusted as a replica"
        if primary.system_identifier not in (None, system_identifier):
            return f"it is a copy of system {system_identifier}, not {primary.system_identifier}"
        # A failed probe of the primary (a pgbouncer wait under load, as well as an outage)
        # opens no gate: the checks below use the primary as last seen, and a replica whose
        # receiver still streams has a primary to stream from.
        if pid is None:
            return "its WAL receiver is not running"
        if receiver is None:
            return "the app's role cannot read pg_stat_wal_receiver: grant it pg_read_all_stats"
        if receiver != "streaming":
            return f"its WAL receiver is {receiver}, not streaming"
        if primary.timeline is not None and timeline != primary.timeline:
            return f"it follows timeline {timeline}, the primary is on {primary.timeline}"
        if slot in primary.lost_slots:
            return f"the primary invalidated its replication slot {slot}"
        if replica.lag_seconds > self.max_lag_seconds:
            return f"replay lags {replica.lag_seconds:.1f}s > {self.max_lag_seconds}s"
        if replica.behind_bytes > self.max_lag_bytes:
            return f"replay is {replica.behind_bytes} bytes behind > {self.max_lag_bytes}"
        return None


@cache
def pool():
    """Return this process's replica pool, built from settings."""
    return ReplicaPool(
        settings.TALLY_REPLICA_ALIASES,
        status_ttl=settings.TALLY_REPLICA_STATUS_TTL,
        retry_seconds=settings.TALLY_REPLICA_RETRY_SECONDS,
        max_lag_seconds=settings.TALLY_REPLICA_MAX_LAG_SECONDS,
        max_lag_bytes=settings.TALLY_REPLICA_MAX_LAG_BYTES,
    )
