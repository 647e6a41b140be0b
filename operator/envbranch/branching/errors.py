"""How a reconcile step ends when it does not succeed; handlers.py maps these onto Kopf."""

from __future__ import annotations


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


class StepFailed(BranchError):
    """A step failed in a way retries cannot cure: roll back."""

    def __init__(self, step: str, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.step = step


class Transient(BranchError):
    """Worth retrying with backoff (connection refused, conflicts, 5xx, a busy source)."""

    def __init__(self, step: str, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.step = step


class Cancelled(BranchError):
    """The Environment is being deleted: stop branching and leave the removal to the finalizer."""

    def __init__(self) -> None:
        super().__init__("Cancelled", "the Environment is being deleted: branching stopped; the finalizer "
                         "removes what was made")
