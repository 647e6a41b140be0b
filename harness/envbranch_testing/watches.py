"""Kubernetes watches kept open in background threads for the length of a `with` block: the base of
history.History and of the Argo CD health test's recorder, which differ only in what they keep of
each event."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Self

from kubernetes import watch

# A list function, its positional and keyword arguments, and the resourceVersion to watch from.
Stream = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], str]


class Watches:
    """One thread per stream, each watching from its resourceVersion on and picking up where it left
    off when the server ends a watch; `on_event` (under a lock) keeps what a subclass wants and
    returns the event's resourceVersion. Leaving the block stops the threads and raises what any of
    them hit."""

    def __init__(self, streams: list[Stream]) -> None:
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._watch, args=stream, daemon=True) for stream in streams]

    def on_event(self, event: dict[str, Any]) -> str:
        raise NotImplementedError

    def _watch(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], rv: str) -> None:
        try:
            while not self._stop.is_set():
                # A short server-side timeout, so a stop is noticed within seconds.
                for event in watch.Watch().stream(fn, *args, resource_version=rv, timeout_seconds=2,
                                                  allow_watch_bookmarks=False, **kwargs):
                    with self._lock:
                        rv = self.on_event(event)
        except BaseException as exc:  # surfaced by __exit__
            self.errors.append(exc)

    def __enter__(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self._threads), "a watch did not stop"
        assert not self.errors, self.errors
