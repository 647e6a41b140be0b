"""Names shared by both resources and every package: group, version, plurals, labels, annotations,
conditions, phases, resource names, timestamps; and the Condition model."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "envbranch.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = "envbranch.io/cleanup"

LABEL_PROJECT = "envbranch.io/project"
LABEL_ENVIRONMENT = "envbranch.io/environment"
LABEL_UID = "envbranch.io/uid"
LABEL_CATEGORY = "envbranch.io/category"
LABEL_PROVIDER_ID = "envbranch.io/provider-id"
LABEL_COPIED_FROM_ID = "envbranch.io/copied-from-id"
ANNOTATION_COPIED_FROM = "envbranch.io/copied-from"
ANNOTATION_ROTATE_KEYS = "envbranch.io/rotate-keys"
ANNOTATION_RETRY = "envbranch.io/retry"
ANNOTATION_REFRESH = "envbranch.io/refresh"
# Written by the operator when spec.refresh.schedule fires (the time it fired for).
ANNOTATION_REFRESH_SCHEDULED = "envbranch.io/refresh-scheduled"
# Test-only switch, honoured only when the operator runs with ENVBRANCH_FAULT_INJECTION=1.
ANNOTATION_INJECT_FAULT = "envbranch.io/inject-fault"
ANNOTATION_INJECT_PAUSE = "envbranch.io/inject-pause"

CONDITION_READY = "Ready"
CONDITION_RECONCILING = "Reconciling"
CONDITION_STALLED = "Stalled"
CONDITION_SOURCE_READY = "SourceReady"
CONDITION_DATABASE_READY = "DatabaseReady"
CONDITION_CREDENTIALS_READY = "CredentialsReady"
CONDITION_CONFIG_COPIED = "ConfigCopied"
CONDITION_REFRESHED = "Refreshed"
CONDITION_DATA_MASKED = "DataMasked"
# DatabaseServer: every listed replica is a usable standby (absent when none is listed; Ready ignores it).
CONDITION_REPLICAS_READY = "ReplicasReady"
REASON_REPLICAS_USABLE = "ReplicasUsable"
REASON_REPLICA_UNAVAILABLE = "ReplicaUnavailable"

PHASE_PENDING = "Pending"
PHASE_BRANCHING = "Branching"
PHASE_ACTIVE = "Active"
PHASE_FAILED = "Failed"
PHASE_DELETING = "Deleting"

# Resource plurals, and the names of what an environment makes.
ENVIRONMENTS = "environments"
DATABASESERVERS = "databaseservers"
MASKINGPOLICIES = "maskingpolicies"
REGISTRATION_CONFIGMAP = "envbranch-environment"


def namespace_name(project: str, environment: str) -> str:
    """An environment's own namespace, unless it adopts one."""
    return f"{project}-{environment}"


def credentials_secret_name(environment: str) -> str:
    return f"{environment}-db"


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown keys refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Condition(Model):
    """A metav1.Condition."""

    type: str = Field(max_length=316, description="Type of condition in CamelCase, e.g. Ready.")
    status: str = Field(json_schema_extra={"enum": ["True", "False", "Unknown"]},
                        description="True, False or Unknown.")
    reason: str = Field(max_length=1024, description="Machine-readable CamelCase reason for the last transition.")
    message: str = Field(default="", max_length=32768, description="Human-readable details.")
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"},
                                      description="When the status last changed.")
    observed_generation: int | None = Field(default=None, ge=0,
                                            description="The .metadata.generation the condition was set for.")


def conditions_of(obj: dict[str, Any] | None) -> list[Condition]:
    """The status.conditions of an object read from the API, as models."""
    return [Condition.model_validate(c) for c in ((obj or {}).get("status") or {}).get("conditions") or []]


def now_rfc3339() -> str:
    """Now, as Kubernetes writes timestamps."""
    return format_rfc3339(dt.datetime.now(dt.UTC))


def format_rfc3339(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> dt.datetime:
    """A Kubernetes timestamp (creationTimestamp, lastTransitionTime) as an aware datetime."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def cel(rule: str, message: str) -> dict[str, Any]:
    return {"rule": rule, "message": message}
