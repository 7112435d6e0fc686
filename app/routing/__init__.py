"""Read/write routing for a PostgreSQL primary and its streaming replicas."""

PRIMARY = "default"
