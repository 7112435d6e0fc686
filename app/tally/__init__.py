"""Tally: a write-heavy survey app built for a primary/replica PostgreSQL pair."""
