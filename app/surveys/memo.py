"""Per-process memos: what a worker made once and may use again while its input is unchanged."""

import threading
from collections import OrderedDict

_ALL = []


class Recent:
    """The `size` most recently used entries of a mapping; the oldest go first.

    A memo of what the process would otherwise make on every request (an unpickled survey
    definition, a page's skeleton, a survey's rendered counts). Bounded, so that many surveys,
    or requests for many that do not exist, cannot grow a worker's memory; recently used, so
    that the surveys being taken stay in it while others come and go.
    """

    def __init__(self, size):
        self._size = size
        self._entries = OrderedDict()
        self._lock = threading.Lock()  # gunicorn's threaded workers share a process's memos
        _ALL.append(self)

    def get(self, key):
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key, value):
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __len__(self):
        return len(self._entries)

    def clear(self):
        with self._lock:
            self._entries.clear()


def clear_all():
    """Empty every memo of this process (the tests do, between tests)."""
    for memo in _ALL:
        memo.clear()
