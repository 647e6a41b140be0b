"""The operator's spool: where spooled gentle Dumps keep the rows between reading the source and
loading the branch. One per operator, shared by its concurrent copies: each reserves its size first,
against the file system's free space and the spool's own limit (the chart's emptyDir sizeLimit, past
which the kubelet would evict the operator's Pod)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)


class Spool:
    def __init__(self, directory: str, limit: int | None = None) -> None:
        self.directory, self.limit = directory, limit
        self.reserved_bytes = 0
        self._lock = threading.Lock()

    def room(self) -> int:
        """Bytes a new copy may still reserve."""
        free = shutil.disk_usage(self.directory).free - self.reserved_bytes
        return free if self.limit is None else min(free, self.limit - self.reserved_bytes)

    @contextlib.contextmanager
    def reserved(self, needed: int) -> Iterator[str | None]:
        """A private directory for a copy of `needed` bytes, removed with everything in it at the end;
        None when the spool has no room for it now (the copy then streams instead)."""
        with self._lock:
            room = self.room()
            if needed > room:
                log.warning("spool %s has room for %d bytes, a copy needs about %d: it streams at its maxRate "
                            "instead", self.directory, max(room, 0), needed)
                granted = False
            else:
                self.reserved_bytes += needed
                granted = True
        if not granted:
            yield None
            return
        try:
            # mkdtemp makes it 0700: the files in it hold the source's rows.
            with tempfile.TemporaryDirectory(prefix="envbranch-spool-", dir=self.directory) as held:
                yield held
        finally:
            with self._lock:
                self.reserved_bytes -= needed
