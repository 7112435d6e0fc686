"""Database aliases for the replicas named in TALLY_REPLICA_URLS."""

import re

from django.core.exceptions import ImproperlyConfigured

# NAME as the inventory renders it: the replica's host name, lowercased, with anything but
# [a-z0-9_] replaced by "_" (ansible/group_vars/all/topology.yml, tally_db_replicas).
_NAMED = re.compile(r"(?P<name>[a-z0-9_]+)=(?P<url>.+)")


def replica_aliases(items, *, variable="TALLY_REPLICA_URLS"):
    """Return [(alias, url)] for `NAME=URL` items (alias replica_NAME) or bare URLs (replicaN)."""
    aliases = []
    for number, item in enumerate(items, start=1):
        # A bare URL has "://" before any "=" (a query string may hold "="), a named one after.
        named = _NAMED.fullmatch(item)
        if named:
            aliases.append((f"replica_{named['name']}", named["url"]))
        elif "://" in item.partition("=")[0]:
            aliases.append((f"replica{number}", item))
        else:
            raise ImproperlyConfigured(
                f"{variable}: {item.partition('=')[0]!r} is not a replica name: use NAME=URL "
                "with NAME of a-z, 0-9 and _ only, or a bare postgres:// URL."
            )
    seen = [alias for alias, _url in aliases]
    duplicates = sorted({alias for alias in seen if seen.count(alias) > 1})
    if duplicates:
        raise ImproperlyConfigured(f"{variable} names a replica twice: {', '.join(duplicates)}.")
    return aliases
