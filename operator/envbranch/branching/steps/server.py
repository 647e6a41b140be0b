"""The DatabaseServer's connection, resolved once for the credentials Secret and the registration."""

from __future__ import annotations

from envbranch.branching import connection
from envbranch.branching.run import Run
from envbranch.branching.step import Plan, Step


def make(run: Run, plan: Plan) -> None:
    run.server = connection.server_info(run.ctx, run.project, plan.server_name)


STEP = Step("server", make, part_of="namespace")
