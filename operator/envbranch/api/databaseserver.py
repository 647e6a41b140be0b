"""The DatabaseServer resource: a PostgreSQL server environments live on."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from envbranch.api.common import DNS_LABEL, Condition, Model

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class SecretKeyRef(Model):
    name: str = Field(max_length=253, pattern=DNS_LABEL, description="Secret in the same namespace.")
    username_key: str = Field(default="username", max_length=253, description="Key holding the role name.")
    password_key: str = Field(default="password", max_length=253, description="Key holding the password.")


class DatabaseServerSpec(Model):
    host: str = Field(min_length=1, max_length=253, description="Host name or address of the server.")
    port: int = Field(default=5432, ge=1, le=65535, description="TCP port.")
    ssl_mode: SslMode = Field(default="prefer", description="libpq sslmode.")
    admin_secret_ref: SecretKeyRef = Field(description="Secret with a role that has CREATEDB and CREATEROLE "
                                           "(superuser is neither needed nor wanted).")
    maintenance_database: str = Field(default="postgres", max_length=63,
                                      description="Database the operator connects to for administration.")
    adoptable_databases: list[Annotated[str, Field(min_length=1, max_length=63)]] | None = Field(
        default=None, max_length=256, json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Existing databases a root Environment may adopt (spec.database.name). Nothing else on "
        "this server can be adopted; only those who may edit DatabaseServers (project owners) list them.")


class DatabaseServerStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    version: str | None = Field(default=None, description="Server version, e.g. 18.1.")
    version_num: int | None = None
    strategies: list[str] | None = Field(default=None, description="Clone strategies usable on this server.")
    file_copy_clone: bool | None = Field(default=None, description="PostgreSQL 18 file_copy_method=clone works.")
    last_probe_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})


class DatabaseServer(Model):
    api_version: str = "envbranch.io/v1alpha1"
    kind: str = "DatabaseServer"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: DatabaseServerSpec
    status: DatabaseServerStatus | None = None
