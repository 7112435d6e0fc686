"""Process-wide view of the replicas: replay position, lag, and a circuit breaker per replica."""

import contextlib
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.db import DatabaseError, connections

from routing import lsn

logger = logging.getLogger("tally.routing")

# One round trip gives everything needed to decide whether a replica may serve a read.
# The lag in seconds is 0 when the replica has replayed all it received: on an idle primary
# now() - pg_last_xact_replay_timestamp() grows forever although the replica is current.
STATUS_SQL = """
SELECT pg_is_in_recovery(),
       pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float8
"""


@dataclass
class ReplicaStatus:
    """The last known state of one replica alias."""

    alias: str
    checked_at: float = float("-inf")
    replay_lsn: int = 0
    lag_seconds: float = 0.0
    usable: bool = False
    down_until: float = float("-inf")


class ReplicaPool:
    """Chooses a replica for a read: healthy, not lagging, and past the client's WAL floor."""

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
        # The highest primary position this process has seen after a write; a replica whose
        # WAL receiver died looks current by its own numbers but falls behind this one.
        self.primary_lsn = 0

    @property
    def aliases(self):
        return [replica.alias for replica in self._replicas]

    def choose(self, floor=None):
        """Return a usable replica alias that has replayed past `floor`, or None."""
        count = len(self._replicas)
        if not count:
            return None
        start = next(self._turn)
        for offset in range(count):
            replica = self._replicas[(start + offset) % count]
            if self._serves(replica, floor):
                return replica.alias
        return None

    def note_primary_lsn(self, position):
        """Remember how far the primary has got, as seen after one of this process's writes."""
        with self._lock:
            self.primary_lsn = max(self.primary_lsn, position)

    def trip(self, alias, reason):
        """Take a replica out of rotation for `retry_seconds` after it failed."""
        replica = self._find(alias)
        replica.usable = False
        replica.down_until = self._clock() + self.retry_seconds
        logger.warning(
            "replica %s is unavailable (%s); reads fall back to the primary for %ss",
            alias,
            reason,
            self.retry_seconds,
        )
        with contextlib.suppress(DatabaseError):
            connections[alias].close()

    def status(self, alias):
        """Return the last known status of a replica, refreshing it if it is stale."""
        replica = self._find(alias)
        self._refresh_if_stale(replica)
        return replica

    def _find(self, alias):
        for replica in self._replicas:
            if replica.alias == alias:
                return replica
        raise KeyError(alias)

    def _serves(self, replica, floor):
        if not self._refresh_if_stale(replica):
            return False
        return floor is None or replica.replay_lsn >= floor

    def _refresh_if_stale(self, replica):
        now = self._clock()
        if now < replica.down_until:
            return False
        if now - replica.checked_at >= self.status_ttl:
            self._probe(replica, now)
        return replica.usable

    def _probe(self, replica, now):
        try:
            with connections[replica.alias].cursor() as cursor:
                cursor.execute(STATUS_SQL)
                in_recovery, replay_text, lag_seconds = cursor.fetchone()
        except DatabaseError as exc:
            self.trip(replica.alias, exc.__class__.__name__)
            return
        replica.checked_at = now
        replica.replay_lsn = lsn.parse(replay_text) or 0
        replica.lag_seconds = lag_seconds
        behind_bytes = self.primary_lsn - replica.replay_lsn
        problem = None
        if not in_recovery:
            problem = "it is not in recovery, so it cannot be trusted as a replica"
        elif lag_seconds > self.max_lag_seconds:
            problem = f"replay lags {lag_seconds:.1f}s > {self.max_lag_seconds}s"
        elif behind_bytes > self.max_lag_bytes:
            problem = f"replay is {behind_bytes} bytes behind > {self.max_lag_bytes}"
        if problem and replica.usable:
            logger.warning("replica %s skipped: %s", replica.alias, problem)
        elif not problem and not replica.usable:
            logger.info("replica %s is in rotation", replica.alias)
        replica.usable = problem is None


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
