"""The step table: the reconcile's steps in the order they run (validate comes before, activate
after). Adding a step is one module here and one line in STEPS."""

from __future__ import annotations

from envbranch.branching.step import Step, Undo
from envbranch.branching.steps import configuration, credentials, database, namespace, registration, server

STEPS: tuple[Step, ...] = (
    namespace.STEP,        # 10%  the environment's namespace
    server.STEP,           #      the DatabaseServer's connection (reported as namespace)
    database.STEP,         # 20%  owner role, then the database: created, cloned or adopted
    credentials.STEP,      # 80%  LOGIN role and the <environment>-db Secret
    registration.STEP,     #      the envbranch-environment ConfigMap (reported as credentials)
    configuration.STEP,    # 90%  the source's configuration, by category
)

CONDITIONS: dict[str, str] = {s.name: s.condition for s in STEPS if s.condition}


def _undo_table() -> dict[str, Undo]:
    table: dict[str, Undo] = {}
    for step in STEPS:
        for kind, undo in step.undo.items():
            assert table.setdefault(kind, undo) is undo, f"two removals declared for {kind}"
    return table


UNDO: dict[str, Undo] = _undo_table()
