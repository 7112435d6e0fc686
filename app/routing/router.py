"""The database router: writes to the primary, reads to a replica that has the client's writes."""

from django.db import connections

from routing import PRIMARY, state
from routing.replicas import pool


class PinningReplicaRouter:
    """Route writes to the primary and reads to a replica, keeping read-your-writes per client."""

    def db_for_read(self, model, **hints):
        """Read from a replica unless this client or transaction needs the primary."""
        current = state.current()
        if connections[PRIMARY].in_atomic_block:
            return PRIMARY
        if model in current.replica_safe_models:
            return self._replica(current, floor=None)
        if current.wrote:
            return PRIMARY
        return self._replica(current, floor=current.floor)

    def db_for_write(self, model, **hints):
        """Write to the primary; the rest of the request then reads there too."""
        state.current().wrote = True
        return PRIMARY

    def allow_relation(self, obj1, obj2, **hints):
        """Every alias is the same database, so relations between them are fine."""
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        """Migrate the primary only; replicas receive the schema by streaming."""
        return db == PRIMARY

    @staticmethod
    def _replica(current, *, floor):
        alias = pool().choose(floor)
        if alias is None:
            return PRIMARY
        current.replica_used = alias
        return alias
