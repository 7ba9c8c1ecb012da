"""One lock per content hash, so that one server process reads and stores each new image once.

Thirty clients uploading the same new image at once would otherwise all miss the stored record, all run the
model and all answer "created". With :class:`ContentLocks` the first upload of a content takes the lock of
its hash; the others wait for it, then find the stored record (the caller checks again under the lock).
Uploads of different contents never wait for each other here. The locks live in one process: workers of
other processes (``cxreader screen``, a second server) are kept consistent by the database's unique
``(content_sha256, checkpoint_id)``, not by these locks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ContentLocks:
    """Named locks that exist only while someone holds or waits for them (no table that grows forever)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        # name -> [its lock, the threads holding or waiting for it]
        self._locks: dict[str, list] = {}

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Hold the lock of ``name`` for the ``with`` block (blocks while another thread holds it)."""
        with self._guard:
            entry = self._locks.setdefault(name, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[name]

    def __len__(self) -> int:
        """How many names are held or waited for now."""
        with self._guard:
            return len(self._locks)
