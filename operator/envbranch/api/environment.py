"""The Environment resource: one branch (or root) of an application environment."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal, cast

from pydantic import ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from envbranch.api.common import DNS_LABEL, Condition, Model, cel, parse_rfc3339

Mode = Literal["Full", "System"]
Strategy = Literal["Auto", "Template", "Dump"]
DeletionPolicy = Literal["Delete", "Retain"]
Phase = Literal["Pending", "Branching", "Active", "Failed", "Deleting"]
Access = Literal["Open", "Sealed"]
RefreshStage = Literal["Copying", "Copied", "Done", "Failed"]

TTL_PATTERN = r"^([0-9]+[smhd])+$"
# Five cron fields (minute hour day-of-month month day-of-week), each made of digits, names, '*',
# '/', ',', '-' and '?'. What the fields mean is checked by the operator (condition Refreshed, reason
# InvalidSchedule); this pattern refuses the obviously wrong at apply.
CRON_PATTERN = r"^[0-9A-Za-z*/,?-]+( +[0-9A-Za-z*/,?-]+){4}$"
_TTL_PART = re.compile(r"([0-9]+)([smhd])")
_TTL_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(value: str) -> dt.timedelta:
    """`72h`, `90m`, `1h30m`, `7d` -> timedelta."""
    if not re.fullmatch(TTL_PATTERN, value):
        raise ValueError(f"invalid ttl {value!r}: use a duration such as 72h, 90m, 1h30m or 7d")
    return dt.timedelta(seconds=sum(int(n) * _TTL_UNIT[u] for n, u in _TTL_PART.findall(value)))


def expiry(created: str, ttl: str) -> dt.datetime:
    """When an Environment created at `created` (its creationTimestamp) with `ttl` expires."""
    return parse_rfc3339(created) + parse_ttl(ttl)


class CopyFlags(Model):
    """Which configuration of the source is copied into the branch (project owners only)."""

    file_providers: bool = Field(default=False, description="Copy ConfigMaps/Secrets labelled "
                                 "envbranch.io/category=file-providers; each copy gets a new provider id.")
    gateway_routes: bool = Field(default=False, description="Copy gateway routes and webhooks "
                                 "(category gateway-routes).")
    security_config: bool = Field(default=False, description="Copy CORS, rate limits and OAuth clients "
                                  "(categories security-config and oauth-clients).")
    environment_variables: bool = Field(default=False, description="Copy key/values, Secrets included "
                                        "(category environment-variables).")


# A Kubernetes quantity of bytes per second: digits and an optional SI or binary suffix ("20Mi", "500k").
RATE_PATTERN = r"^[1-9][0-9]{0,11}(k|M|G|Ki|Mi|Gi)?$"
_RATE = re.compile(RATE_PATTERN)
_RATE_UNIT = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
# A slower copy would hold one of the operator's few copy slots for hours: the floor keeps anyone who may
# create a branch from starving everyone else's copies.
MIN_RATE = "1Mi"
MAX_STREAMS = 8


def parse_rate(value: str) -> int:
    """`20Mi` -> 20971520 (bytes per second)."""
    m = _RATE.fullmatch(value)
    if not m:
        raise ValueError(f"invalid rate {value!r}: use bytes per second as a quantity such as 20Mi or 500k")
    return int(value[:m.start(1)] if m.group(1) else value) * _RATE_UNIT[m.group(1) or ""]


class DumpLimits(Model):
    """How hard a Dump may read its source: a shared byte-rate cap and the number of streams."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              json_schema_extra={"x-kubernetes-validations": cast(Any, [cel(
                                  f"!has(self.maxRate) || quantity(self.maxRate).compareTo(quantity('{MIN_RATE}')) "
                                  ">= 0", f"maxRate must be at least {MIN_RATE} (bytes per second)")])})

    max_rate: str | None = Field(default=None, max_length=16, pattern=RATE_PATTERN,
                                 description="Bytes per second the copy may read from its source, all streams "
                                 f"together, as a quantity (e.g. 20Mi); at least {MIN_RATE}. Default: no cap.")
    streams: int | None = Field(default=None, ge=1, le=MAX_STREAMS,
                                description="Tables (or block slices of a big one) copied at once, beside one "
                                "session for the tables under 1 MB (default 2); 1 copies one table at a time.")
    spool: bool | None = Field(default=None, description="With maxRate: read the source at full speed into "
                               "the operator's spool directory (--spool-dir), so the copy's snapshot, which holds "
                               "back the source's vacuum, lasts only for the read; then load the branch at maxRate "
                               "(maxRate then caps the writes into the branch). Without a spool directory or room "
                               "in it, the rows stream at maxRate. Default false.")

    @field_validator("max_rate")
    @classmethod
    def _at_least_the_floor(cls, value: str | None) -> str | None:
        if value is not None and parse_rate(value) < parse_rate(MIN_RATE):
            raise ValueError(f"maxRate must be at least {MIN_RATE} (bytes per second)")
        return value


class EnvironmentDatabase(Model):
    """Where the environment's database lives and how it is cloned."""

    server_ref: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL,
                                   description="DatabaseServer in the same namespace; default: the source's.")
    strategy: Strategy = Field(default="Auto", description="Auto (Template when possible now, else Dump), "
                               "Template (CREATE DATABASE ... TEMPLATE) or Dump (online logical copy).")
    name: str | None = Field(default=None, min_length=1, max_length=63,
                             description="Roots only: the existing PostgreSQL database to adopt.")
    masking: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL,
                                description="Full branches: the MaskingPolicy (same namespace) whose rules mask "
                                "the rows while the source reads them; from an unmasked source that is "
                                "always a Dump.")
    dump: DumpLimits | None = Field(default=None, description="Limits of a Dump copy that spare a busy source; "
                                    "unset fields take the source DatabaseServer's spec.dump.")


class RefreshSpec(Model):
    """Re-clone the database from the source in place, on a schedule (and on demand through the
    annotation envbranch.io/refresh)."""

    schedule: str | None = Field(default=None, max_length=100, pattern=CRON_PATTERN,
                                 description="Cron expression (UTC), e.g. '0 3 * * *' for 03:00 every night.")


_IMMUTABLE_SCALARS = ("source", "mode")
_IMMUTABLE_OBJECTS = ("copy", "database")


def _immutability_rules() -> list[dict[str, Any]]:
    rules = [cel(f"(has(self.{f}) ? self.{f} : '') == (has(oldSelf.{f}) ? oldSelf.{f} : '')",
                 f"spec.{f} is immutable") for f in _IMMUTABLE_SCALARS]
    rules.append(cel("(has(self.__namespace__) ? self.__namespace__ : '') == "
                     "(has(oldSelf.__namespace__) ? oldSelf.__namespace__ : '')", "spec.namespace is immutable"))
    # Open -> Sealed would have to take credentials away from running applications, Sealed -> Open
    # would hand a snapshot's data to them: both are a new environment instead.
    rules.append(cel("(has(self.access) ? self.access : 'Open') == (has(oldSelf.access) ? oldSelf.access : 'Open')",
                     "spec.access is immutable: create a new environment to seal or open one"))
    rules += [cel(f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})",
                  f"spec.{f} is immutable") for f in _IMMUTABLE_OBJECTS]
    return rules


SPEC_RULES = [
    cel("!has(self.source) || has(self.mode)",
        "spec.mode is required on a branch (spec.source is set): Full or System"),
    cel("!has(self.source) || (!has(self.__namespace__) && !(has(self.database) && has(self.database.name)))",
        "spec.namespace and spec.database.name are for root environments only (without spec.source)"),
    cel("has(self.source) || !has(self.copy)", "spec.copy needs spec.source: a root environment has nothing to copy"),
    cel("has(self.source) || !has(self.mode)", "spec.mode needs spec.source: a root environment is not a branch"),
    cel("has(self.source) || !has(self.refresh)",
        "spec.refresh needs spec.source: a root environment has nothing to refresh from"),
    cel("!has(self.access) || self.access == 'Open' || has(self.source)",
        "spec.access Sealed is for branches (spec.source set): a root's database serves its applications"),
    cel("!has(self.database) || !has(self.database.masking) || (has(self.mode) && self.mode == 'Full')",
        "spec.database.masking needs mode Full: a System branch copies no rows"),
    cel("!has(self.source) || !has(self.personalData)",
        "spec.personalData is for root environments only: a branch inherits it from its source"),
]


class EnvironmentSpec(Model):
    """What the user asks for. The operator never writes defaults back here; effective values go to status."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              json_schema_extra={"x-kubernetes-validations": cast(
                                  Any, SPEC_RULES + _immutability_rules())})

    display_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$", max_length=64,
                                     description="Free-form name, unique in the project; may be changed (rename).")
    source: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL,
                               description="Environment in the same namespace to branch from; omit for a root.")
    mode: Mode | None = Field(default=None, description="Required on branches: Full = schema + data, "
                              "System = schema only.")
    copy_flags: CopyFlags | None = Field(default=None, alias="copy",
                                         description="Configuration to copy from the source; all default false.")
    database: EnvironmentDatabase | None = Field(default=None, description="Database placement and clone strategy.")
    namespace: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL,
                                  description="Roots only: the existing namespace to adopt.")
    access: Access | None = Field(default=None, description="Open (default): a credentials Secret, the "
                                  "application connects. Sealed: no credentials and no login role; only the "
                                  "operator connects, so the database is always idle and branches of it are "
                                  "Template copies. Immutable.")
    refresh: RefreshSpec | None = Field(default=None, description="Branches only: re-clone the database from "
                                        "the source on a schedule, keeping role, password, Secret and children.")
    ttl: str | None = Field(default=None, max_length=32, pattern=TTL_PATTERN,
                            description="Delete the environment this long after creation, e.g. 72h, 90m, 7d.")
    personal_data: bool | None = Field(
        default=None, description="Roots only, project owners only: the database holds personal data, so "
        "every Full branch of it (and of its unmasked Full branches) needs spec.database.masking "
        "(MaskingRequired).")
    deletion_policy: DeletionPolicy | None = Field(
        default=None, description="Delete drops the database and role and deletes the namespace; Retain keeps "
        "them. Default: Retain for roots that adopt a namespace or database, Delete otherwise.")

    def adopts(self) -> bool:
        return bool(self.namespace or (self.database and self.database.name))

    @property
    def sealed(self) -> bool:
        return self.access == "Sealed"

    def effective_deletion_policy(self) -> DeletionPolicy:
        if self.deletion_policy:
            return self.deletion_policy
        return "Retain" if not self.source and self.adopts() else "Delete"


class DatabaseStatus(Model):
    server: str | None = Field(default=None, description="DatabaseServer holding the database.")
    name: str | None = Field(default=None, description="PostgreSQL database name.")
    strategy: str | None = Field(default=None, description="The clone strategy used.")
    bytes: int | None = Field(default=None, description="Size of the database after the clone.")
    seconds: float | None = Field(default=None, description="How long the clone took.")
    rows_from: str | None = Field(default=None, description="host:port of the server the Dump read the schema "
                                  "and rows from: a replica of the source's DatabaseServer, or its primary.")
    replica_lag_seconds: float | None = Field(default=None, description="How far the replica's replay was "
                                              "behind its primary when the copy's snapshot was taken.")
    snapshot_seconds: float | None = Field(default=None, description="A Dump: how long its snapshot was held "
                                           "on the server it read, holding back that server's vacuum.")
    spooled: bool | None = Field(default=None, description="A Dump: true when the rows were read into the "
                                 "operator's spool first and loaded into the branch at maxRate after.")


class RefreshStatus(Model):
    """The refresh under way or last acted on: what a restarted operator resumes from."""

    token: str | None = Field(default=None, max_length=72,
                              description="The envbranch.io/refresh value acted on (a longer one by its "
                              "sha256).")
    scheduled: str | None = Field(default=None, max_length=72,
                                  description="The scheduled time (spec.refresh.schedule) acted on.")
    stage: RefreshStage = Field(description="Copying, Copied (ready to swap), Done or Failed.")
    trigger: str | None = Field(default=None, max_length=96, description="What asked for it: the token, or "
                                "'scheduled <time>'.")
    database: str | None = Field(default=None, description="The new copy, built beside the current database.")
    previous: str | None = Field(default=None, description="The name the current database takes at the swap, "
                                 "until it is dropped.")
    database_oid: int | None = Field(default=None, description="The new copy's OID: after the swap it is the "
                                     "current database's.")
    started_at: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    swap_at: str | None = Field(default=None, json_schema_extra={"format": "date-time"},
                                description="When the sessions of the current database are ended.")
    strategy: str | None = None
    bytes: int | None = None
    cutoff_seconds: float | None = None
    attempts: int | None = Field(default=None, description="Copies that failed in a way worth retrying.")


class LastRefresh(Model):
    """The last refresh that completed."""

    time: str = Field(json_schema_extra={"format": "date-time"}, description="When the swap happened.")
    token: str = Field(max_length=96)
    strategy: str
    bytes: int
    seconds: float = Field(description="Copy and swap, from start to the swap.")
    cutoff_seconds: float | None = Field(default=None, description="How long the database's clients were cut "
                                         "off: from ending their sessions to the renamed copy accepting them.")
class MaskingStatus(Model):
    policy: str = Field(description="The MaskingPolicy the rows were masked with.")
    columns: int = Field(ge=0, description="How many columns were masked.")
    inherited: bool | None = Field(default=None, description="The source was masked already: its masked rows "
                                   "were copied as they are.")


class CopiedCounts(Model):
    file_providers: int | None = None
    gateway_routes: int | None = None
    security_config: int | None = None
    environment_variables: int | None = None


class SkippedObject(Model):
    kind: str
    name: str
    reason: str


class Rotation(Model):
    secret: str = Field(description="The copied Secret.")
    keys: list[str] = Field(description="Keys given fresh random values.")


class InventoryEntry(Model):
    kind: str = Field(description="Namespace, Database, Role, Secret or ConfigMap.")
    name: str
    namespace: str | None = None
    server: str | None = None


class Progress(Model):
    step: str
    percent: int = Field(ge=0, le=100)


class EnvironmentStatus(Model):
    """What the operator observed and did. Never holds a secret value."""

    observed_generation: int | None = None
    phase: Phase | None = None
    conditions: list[Condition] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    parent: str | None = None
    parent_uid: str | None = Field(default=None, description="UID of the source Environment when first seen: "
                                   "another object under that name later is refused (SourceReplaced).")
    branch_mode: str | None = None
    branched_at: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    namespace: str | None = None
    database: DatabaseStatus | None = None
    credentials_secret: str | None = None
    masking: MaskingStatus | None = Field(default=None, description="Which policy masked the data, never the key.")
    copied: CopiedCounts | None = None
    skipped: list[SkippedObject] | None = None
    rotations: list[Rotation] | None = None
    inventory: list[InventoryEntry] | None = None
    progress: Progress | None = None
    expires_at: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    access: Access | None = Field(default=None, description="Open or Sealed (no credentials; only the operator "
                                  "connects).")
    refresh: RefreshStatus | None = None
    last_refresh: LastRefresh | None = None
    next_refresh: str | None = Field(default=None, json_schema_extra={"format": "date-time"},
                                     description="When spec.refresh.schedule fires next.")
    last_retry: str | None = Field(default=None, description="The envbranch.io/retry value last acted on.")


class Environment(Model):
    """A branch of an application environment: database, credentials and configuration."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              json_schema_extra={"x-kubernetes-validations": cast(Any, [cel(
                                  "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && "
                                  "size(self.metadata.name) <= 63",
                                  "metadata.name must be a DNS label: lower-case letters, digits and '-', "
                                  "at most 63 characters")])})

    api_version: str = "envbranch.io/v1alpha1"
    kind: str = "Environment"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: EnvironmentSpec
    status: EnvironmentStatus | None = None
