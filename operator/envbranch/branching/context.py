"""The operator's state, in one object built once by main.py and handed down explicitly: handlers.py
registers its handlers with it, the branching entry points take it, and a Run carries it to the
steps. Nothing of it lives in a module global, so two contexts (two tests) never share anything."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from envbranch import postgres as engine
from envbranch.branching.connection import ServerCache
from envbranch.branching.copy_lane import CopyLane
from envbranch.branching.reaper import ReaperState
from envbranch.health import TrackedExecutor
from envbranch.kube import namespaces
from envbranch.kube.client import KubeClient
from envbranch.settings import OperatorSettings


@dataclass
class OperatorContext:
    """Made by `build`; the fields are what handlers, steps and metrics read."""

    settings: OperatorSettings
    kube: KubeClient
    copy_lane: CopyLane                     # --copy-concurrency slots
    executor: TrackedExecutor               # --concurrency threads, Kopf's from start-up on
    servers: ServerCache = field(default_factory=ServerCache)        # admin connections, a few seconds
    reaper: ReaperState = field(default_factory=ReaperState)
    clone_support: engine.CloneSupport = field(default_factory=engine.CloneSupport)
    spool: engine.Spool | None = None       # --spool-dir, shared by the spooled copies
    # One probe of a DatabaseServer at a time, by UID (the change handler and the timer both probe).
    probe_locks: dict[str, threading.Lock] = field(default_factory=dict)
    _probe_locks_guard: threading.Lock = field(default_factory=threading.Lock)
    # The kube-system UID, which the tags written from here on name (identify_cluster, at start-up).
    cluster: str | None = None

    @classmethod
    def build(cls, settings: OperatorSettings, kube: KubeClient | None = None) -> OperatorContext:
        """The context of an operator run with `settings` (a new API client unless one is given)."""
        return cls(settings=settings, kube=kube or KubeClient(), copy_lane=CopyLane(settings.copy_concurrency),
                   executor=TrackedExecutor(max(2, settings.concurrency)),
                   spool=engine.Spool(settings.spool_dir, settings.spool_limit) if settings.spool_dir else None)

    def probe_lock(self, uid: str) -> threading.Lock:
        with self._probe_locks_guard:
            return self.probe_locks.setdefault(uid, threading.Lock())

    def identify_cluster(self) -> str | None:
        """Read this cluster's identity once, at start-up, before any server connection is made:
        every tag written from then on names it, and the reaper skips other clusters' tags."""
        self.cluster = namespaces.cluster_uid(self.kube)
        return self.cluster
