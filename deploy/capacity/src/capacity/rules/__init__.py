"""The rules, one module per tier. Importing this package registers them in registry.RULES in
the order they run: each rule reads the inputs and the rules registered before it."""

from . import survey, web, pgbouncer, postgresql, redis, nginx, throughput, backups  # noqa: F401, I001
