"""What a reconcile step is: one declaration of its name, condition, progress share and undo.

The step table (steps/__init__.py) lists them in the order they run; the driver (driver.py) runs
them, and rollback and deletion (removal.py) undo what they recorded, by inventory kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envbranch.branching.inventory import Entry
from envbranch.branching.masking import MaskPlan
from envbranch.branching.run import Run


@dataclass
class Plan:
    """What validation found: everything the later steps need, resolved once."""

    namespace: str
    adopt_namespace: bool
    server_name: str
    database: str
    adopt_database: bool
    role: str | None
    parent: dict[str, Any] | None       # the source Environment, for branches
    source_server: str | None
    source_database: str | None
    masking: MaskPlan | None = None       # Full branches: the masking, planned before anything is made


Undo = Callable[[Run, Entry], None]


@dataclass(frozen=True)
class Step:
    name: str                                 # progress, Events, metrics, the test switches
    make: Callable[[Run, Plan], None]         # level-based: looks at what exists before it creates
    condition: str | None = None              # set False with the reason when the step fails
    percent: int | None = None                # progress when it starts; None: it is part of `part_of`
    part_of: str | None = None                # a step that reports as another (no progress point of its own)
    undo: Mapping[str, Undo] = field(default_factory=dict)   # inventory kind it records -> its removal

    @property
    def reported(self) -> str:
        """The step named in failures, conditions and metrics."""
        return self.part_of or self.name
