"""PostgreSQL WAL positions (pg_lsn) as comparable integers."""


def parse(text):
    """Return the integer position of an 'XXXXXXXX/XXXXXXXX' LSN, or None if it is malformed."""
    if not isinstance(text, str):
        return None
    high, sep, low = text.partition("/")
    if not sep or not 0 < len(high) <= 8 or not 0 < len(low) <= 8:
        return None
    try:
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        return None


def format_lsn(position):
    """Return the pg_lsn text form of an integer position."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
