"""Per-request routing state, kept in a contextvar so it is safe under threads and ASGI."""

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import wraps


@dataclass
class RoutingState:
    """What the router needs to know about the current client and request."""

    # The primary WAL position this client's last write reached (from its cookie), or None.
    floor: int | None = None
    # Set once this request has written: its remaining reads go to the primary.
    wrote: bool = False
    # The replica this request read from, so a failure can be pinned on it.
    replica_used: str | None = None
    # Models the current view may read from a replica even when the client is pinned.
    replica_safe_models: frozenset = field(default_factory=frozenset)


_state: ContextVar[RoutingState | None] = ContextVar("tally_routing_state", default=None)


def current():
    """Return this context's routing state, creating an empty one outside a request."""
    state = _state.get()
    if state is None:
        state = RoutingState()
        _state.set(state)
    return state


def begin(*, floor):
    """Start a request's routing state; returns the token that `end` needs."""
    return _state.set(RoutingState(floor=floor))


def end(token):
    """Forget a request's routing state."""
    _state.reset(token)


@contextmanager
def replica_safe(*models):
    """Let reads of `models` use a replica inside this block, even for a pinned client."""
    state = current()
    previous = state.replica_safe_models
    state.replica_safe_models = previous | frozenset(models)
    try:
        yield
    finally:
        state.replica_safe_models = previous


def reads_from_replica(*models):
    """View decorator: `models` do not change during fieldwork, so read them from a replica."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            with replica_safe(*models):
                return view(request, *args, **kwargs)

        return wrapped

    return decorator
