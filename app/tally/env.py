"""Typed readers for the environment variables that configure Tally."""

import os

from django.core.exceptions import ImproperlyConfigured

_MISSING = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name, default):
    value = os.environ.get(name)
    if value is None:
        if default is _MISSING:
            raise ImproperlyConfigured(
                f"{name} is not set. It has no default because it is a secret or differs per "
                f"deployment; set it in the environment (see app/README.md)."
            )
        return None
    return value


def env_str(name, default=_MISSING):
    """Return the variable as a string; without a default it is required."""
    value = _raw(name, default)
    return default if value is None else value


def env_int(name, default=_MISSING, *, minimum=None):
    """Return the variable as an int, failing with the variable's name if it is not one."""
    value = _raw(name, default)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}.")
    return number


def env_float(name, default=_MISSING, *, minimum=None):
    """Return the variable as a float, failing with the variable's name if it is not one."""
    value = _raw(name, default)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}.")
    return number


def env_bool(name, default=_MISSING):
    """Return the variable as a bool (1/0, true/false, yes/no, on/off)."""
    value = _raw(name, default)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {value!r}.")


def env_list(name, default=_MISSING):
    """Return a comma-separated variable as a list of non-empty, stripped items."""
    value = _raw(name, default)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]
