"""A byte rate shared by every stream of one copy: a gentle Dump reads its source no faster than asked."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

CHUNK = 64 * 1024
Chunk = TypeVar("Chunk", bound=Sized)


class ByteRate:
    """At most `bytes_per_second` through `take`, all callers together. Each call books its bytes on one
    clock and then waits for its turn, so N streams share the rate instead of each getting it."""

    def __init__(self, bytes_per_second: int) -> None:
        if bytes_per_second <= 0:
            raise ValueError("a byte rate must be positive")
        self.bytes_per_second = bytes_per_second
        self._free_at = time.monotonic()
        self._lock = threading.Lock()

    def take(self, count: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._free_at = max(self._free_at, now) + count / self.bytes_per_second
            turn = self._free_at - count / self.bytes_per_second
        if turn > now:
            time.sleep(turn - now)  # pacing, the point of the cap (not a wait for a condition)

    def paced(self, chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        for chunk in chunks:
            self.take(len(chunk))
            yield chunk
