"""How a reconcile step ends when it does not succeed (handlers.py maps these onto Kopf), and how any
other exception is classified and told."""

from __future__ import annotations

from kubernetes.client.rest import ApiException

from envbranch import postgres as engine
from envbranch.kube import client as kube_client


class BranchError(Exception):
    """Carries a CamelCase reason for conditions and Events and a message naming what to fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Waiting(BranchError):
    """Not yet possible, nothing wrong: retry later without counting it as a failure."""

    def __init__(self, reason: str, message: str, delay: float) -> None:
        super().__init__(reason, message)
        self.delay = delay


class Invalid(BranchError):
    """The spec cannot be honoured; found before anything was created."""


class StepError(BranchError):
    """An error of a named step (the one failures and retries are reported against)."""

    def __init__(self, step: str, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.step = step


class StepFailed(StepError):
    """A step failed in a way retries cannot cure: roll back."""


class Transient(StepError):
    """Worth retrying with backoff (connection refused, conflicts, 5xx, a busy source)."""


class Cancelled(BranchError):
    """The Environment is being deleted: stop branching and leave the removal to the finalizer."""

    def __init__(self) -> None:
        super().__init__("Cancelled", "the Environment is being deleted: branching stopped; the finalizer "
                         "removes what was made")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, engine.EngineError):
        return exc.transient
    return kube_client.is_transient(exc)


def describe(exc: BaseException) -> str:
    """A message for conditions and Events: engine messages are already scrubbed; API errors are
    reduced to their status and reason (their bodies can echo request content)."""
    if isinstance(exc, engine.EngineError):
        return exc.message
    if isinstance(exc, ApiException):
        return f"Kubernetes API error {exc.status} {exc.reason}"
    return type(exc).__name__
