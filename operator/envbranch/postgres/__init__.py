"""The PostgreSQL half of envbranch: names, probes, clone strategies, credentials, tags, cleanup.
It knows nothing of Kubernetes."""

from envbranch.api.environment import Mode, Strategy
from envbranch.postgres import refresh
from envbranch.postgres.cloning import CloneResult, DumpOptions, clone_database, create_empty_database
from envbranch.postgres.credentials import (
    create_branch_role,
    create_owner_role,
    grant_ownership,
    new_password,
    public_can_connect,
)
from envbranch.postgres.durability import checkpoint_if_allowed
from envbranch.postgres.errors import (
    DiskFull,
    DumpNeeded,
    EngineError,
    InsufficientStorage,
    NotOurs,
    PermanentError,
    ReplicaUnavailable,
    SourceBusy,
    TlsError,
    TransientError,
    classify,
)
from envbranch.postgres.masking import Masking
from envbranch.postgres.names import branch_database_name, branch_role_name
from envbranch.postgres.probe import Capabilities, CloneSupport, probe
from envbranch.postgres.replicas import ReplicaCheck, check_replicas, replica_servers
from envbranch.postgres.server import Server, Tls
from envbranch.postgres.spool import Spool
from envbranch.postgres.storage import Budget, Room, require_room
from envbranch.postgres.tags import Tagged, drop_branch, drop_database, drop_role, find_tagged, untag

__all__ = [
    "Budget", "Capabilities", "CloneResult", "CloneSupport", "DiskFull", "DumpNeeded", "DumpOptions", "EngineError",
    "InsufficientStorage", "Masking", "Mode", "NotOurs", "PermanentError", "ReplicaCheck", "ReplicaUnavailable",
    "Room", "Server", "SourceBusy", "Spool", "Strategy", "Tagged", "Tls", "TlsError", "TransientError",
    "branch_database_name",
    "branch_role_name", "check_replicas", "checkpoint_if_allowed", "classify", "clone_database", "create_branch_role",
    "create_empty_database", "create_owner_role", "drop_branch", "drop_database", "drop_role", "find_tagged",
    "grant_ownership", "new_password", "probe", "public_can_connect", "refresh", "replica_servers", "require_room",
    "untag",
]
