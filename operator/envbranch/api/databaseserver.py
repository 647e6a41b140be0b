"""The DatabaseServer resource: a PostgreSQL server environments live on."""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from envbranch.api.common import DNS_LABEL, Condition, Model, cel
from envbranch.api.environment import DumpLimits

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class SecretKeyRef(Model):
    name: str = Field(max_length=253, pattern=DNS_LABEL, description="Secret in the same namespace.")
    username_key: str = Field(default="username", max_length=253, description="Key holding the role name.")
    password_key: str = Field(default="password", max_length=253, description="Key holding the password.")


# Keys of the object spec.tls names (cert-manager's and kubernetes.io/tls Secrets' names).
TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY = "ca.crt", "tls.crt", "tls.key"
TLS_SSL_MODES = ("require", "verify-ca", "verify-full")


class TlsRef(Model):
    kind: Literal["Secret", "ConfigMap"] = Field(
        default="Secret", description="Secret (default) or ConfigMap. Only a Secret may hold a client certificate.")
    name: str = Field(max_length=253, pattern=DNS_LABEL, description="Secret or ConfigMap in the same namespace.")


_TLS_NEEDS_MODE = ("spec.tls needs sslMode verify-full (recommended), verify-ca or require: with prefer or allow "
                   "a certificate that does not verify would fall back to plain text")
# sslMode has no schema default (defaults are never written into spec): absent means prefer.
SPEC_RULES = [cel(f"!has(self.tls) || (has(self.sslMode) && self.sslMode in {list(TLS_SSL_MODES)})", _TLS_NEEDS_MODE)]


class Replica(Model):
    host: str = Field(min_length=1, max_length=253, description="Host name or address of a streaming standby "
                      "of this server; reached with the same admin role, sslMode and spec.tls.")
    port: int = Field(default=5432, ge=1, le=65535, description="TCP port.")


class StorageBudget(Model):
    budget_bytes: int = Field(ge=1, description="Bytes all envbranch databases on this server (found by their "
                              "tags) may hold together. A branch starts only when they, its expected size and "
                              "reserveBytes fit; otherwise it fails with InsufficientStorage before copying.")
    reserve_bytes: int = Field(default=0, ge=0, description="Headroom a copy needs beyond its final size (WAL, "
                               "index sorts), counted against budgetBytes at every start. Default 0.")


class DatabaseServerSpec(Model):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              json_schema_extra={"x-kubernetes-validations": cast(Any, SPEC_RULES)})

    host: str = Field(min_length=1, max_length=253, description="Host name or address of the server; with "
                      "verify-full it must be a name the server certificate lists.")
    port: int = Field(default=5432, ge=1, le=65535, description="TCP port.")
    ssl_mode: SslMode = Field(
        default="prefer",
        description="libpq sslmode of every operator connection and client tool, and the sslmode written into "
                    "branch credentials Secrets. Default prefer: TLS when the server offers it, with no check of "
                    "its certificate, and plain text when it does not. Recommended: verify-full with spec.tls "
                    "(encrypted, server certificate checked against the CA and the host name).")
    tls: TlsRef | None = Field(
        default=None,
        description="Secret or ConfigMap in the same namespace holding the CA bundle (key ca.crt) the server "
                    "certificate is checked against, and, in a Secret, optionally a client certificate and key "
                    "(tls.crt, tls.key) for the admin role. Needs sslMode require, verify-ca or verify-full. "
                    "ca.crt is copied into branch credentials Secrets; the client certificate and key never are.")

    @model_validator(mode="after")
    def _tls_needs_a_checking_mode(self) -> DatabaseServerSpec:
        if self.tls is not None and self.ssl_mode not in TLS_SSL_MODES:
            raise ValueError(_TLS_NEEDS_MODE)
        return self
    admin_secret_ref: SecretKeyRef = Field(description="Secret with a role that has CREATEDB and CREATEROLE "
                                           "(superuser is neither needed nor wanted).")
    maintenance_database: str = Field(default="postgres", max_length=63,
                                      description="Database the operator connects to for administration.")
    adoptable_databases: list[Annotated[str, Field(min_length=1, max_length=63)]] | None = Field(
        default=None, max_length=256, json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Existing databases a root Environment may adopt (spec.database.name). Nothing else on "
        "this server can be adopted; only those who may edit DatabaseServers (project owners) list them.")
    replicas: list[Replica] | None = Field(
        default=None, max_length=8, description="Streaming standbys of this server. A Dump from a database on "
        "this server reads its schema and rows from the first one that answers as a standby of it (one "
        "exported snapshot there), never from the primary; with none usable the copy is retried, then fails.")
    dump: DumpLimits | None = Field(default=None, description="Default limits of Dump copies reading from this "
                                    "server; an Environment's spec.database.dump overrides them field by field.")
    storage: StorageBudget | None = Field(default=None, description="Disk budget of envbranch's databases on "
                                          "this server. Default: none (no check).")


class TlsStatus(Model):
    encrypted: bool = Field(description="The admin session is encrypted (pg_stat_ssl).")
    protocol: str | None = Field(default=None, description="TLS protocol version, e.g. TLSv1.3.")
    verified: Literal["None", "CA", "Full"] = Field(
        description="What was checked before the password was sent: nothing, the CA chain, or the CA chain and "
                    "the host name (verify-full).")
    client_certificate: bool = Field(default=False, description="The admin session presented a client certificate.")


class ReplicaStatus(Model):
    address: str = Field(description="host:port of the listed replica.")
    usable: bool = Field(description="A Dump could read from it now: it answers the admin role as a standby "
                         "(pg_is_in_recovery()) of this server (same system identifier).")
    reason: str = Field(description="Usable, Unreachable, Refused (login or pg_hba.conf), TLSFailed, NotACopy "
                        "(another server's data) or NotAStandby (promoted, or the primary itself).")
    message: str = Field(default="", description="What the check found; never a password.")
    replay_lag_seconds: int | None = Field(default=None, ge=0, description="Seconds the standby's replay was "
                                           "behind at the probe, in whole seconds; only when usable.")


class DatabaseServerStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    version: str | None = Field(default=None, description="Server version, e.g. 18.1.")
    version_num: int | None = None
    strategies: list[str] | None = Field(default=None, description="Clone strategies usable on this server.")
    file_copy_clone: bool | None = Field(default=None, description="PostgreSQL 18 file_copy_method=clone works.")
    last_probe_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    tls: TlsStatus | None = Field(default=None, description="The admin session's transport, as last probed.")
    replicas: list[ReplicaStatus] | None = Field(
        default=None, description="Each spec.replicas entry as the last probe that reached the primary found it "
        "(absent when none are listed). Condition ReplicasReady is False while any is unusable.")
    replicas_usable: str | None = Field(default=None, description="Usable replicas of those listed, e.g. 1/2.")


class DatabaseServer(Model):
    api_version: str = "envbranch.io/v1alpha1"
    kind: str = "DatabaseServer"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: DatabaseServerSpec
    status: DatabaseServerStatus | None = None
