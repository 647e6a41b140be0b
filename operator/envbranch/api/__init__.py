"""The one definition of envbranch's custom resources; crds/ is generated from these models."""

from envbranch.api.databaseserver import DatabaseServer, DatabaseServerSpec, DatabaseServerStatus
from envbranch.api.environment import Environment, EnvironmentSpec, EnvironmentStatus, parse_ttl

__all__ = ["DatabaseServer", "DatabaseServerSpec", "DatabaseServerStatus", "Environment", "EnvironmentSpec",
           "EnvironmentStatus", "parse_ttl"]
