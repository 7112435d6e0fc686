"""Django's PostgreSQL backend, with a persistent connection's health check made local.

With CONN_HEALTH_CHECKS, Django checks a kept connection before a request first uses it, by
sending `SELECT 1`. Behind pgbouncer in transaction mode that is a full round trip: pgbouncer
lends the statement a server connection, and PostgreSQL parses and runs it. On the local fleet
that was one statement per request, as many as the app's own reads on a replica.

A connection that nothing is using has nothing to read. The server's end closing it (pgbouncer
restarted, a timeout) or an error it sent makes the socket readable, so a zero-timeout poll
tells a live idle connection from a dead one without sending anything. Whatever arrived is
left for Django's own check to read: it sends the `SELECT 1` and judges by the answer.
"""

import select

from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self):
        connection = self.connection
        if connection is None:
            return False
        if connection.closed or connection.pgconn.status != pq.ConnStatus.OK:
            return False
        if connection.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            return super().is_usable()
        readable, _, _ = select.select([connection.pgconn.socket], [], [], 0)
        return not readable or super().is_usable()
