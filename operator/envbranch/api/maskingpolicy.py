"""The MaskingPolicy resource: how a masked branch's rows are replaced while the source reads them.

Project owners write it (the chart's roles); editors and viewers read it. The key stays in the
Secret keySecretRef names: no field here holds it, and status never shows it."""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from envbranch.api.common import DNS_LABEL, Model, cel

MaskFunction = Literal["Hash", "Email", "PersonName", "Phone", "Partial", "Constant", "Null", "DateShift"]
Unclassified = Literal["Refuse", "Allow"]
# `table` or `schema.table` (public when no schema is given); names as PostgreSQL spells them, unquoted
# (a name holding a dot cannot be named).
TABLE_PATTERN = r"^[^.]{1,63}(\.[^.]{1,63})?$"
COLUMN_REF_PATTERN = r"^[^.]{1,63}(\.[^.]{1,63}){1,2}$"
# Reserved for documentation and testing (RFC 2606 / 6761): mail to them never reaches anyone.
RESERVED_DOMAIN = r"^([a-z0-9-]+\.)*(example|invalid|test|example\.(com|net|org))$"

_PARAMETERS = {"keep": "Partial", "value": "Constant", "maxDays": "DateShift", "domain": "Email"}
RULE_RULES = [cel(f"!has(self.{p}) || self.function == '{f}'", f"{p} is a parameter of function {f} only")
              for p, f in _PARAMETERS.items()]
RULE_RULES.append(cel("self.function != 'Constant' || has(self.value)", "function Constant needs value"))


class MaskingRule(Model):
    """`table.column -> function`: what replaces every value of one column."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              json_schema_extra={"x-kubernetes-validations": cast(Any, RULE_RULES)})

    table: str = Field(max_length=127, pattern=TABLE_PATTERN,
                       description="`table` or `schema.table` (default schema public); a partitioned "
                                   "table's rule covers its partitions.")
    column: str = Field(min_length=1, max_length=63, description="The column, as PostgreSQL spells it.")
    function: MaskFunction = Field(description=(
        "Hash: keyed HMAC-SHA256, hex (text), number (bigint), uuid or bytea; the same value gives the same "
        "result in every table and branch of the project, distinct values stay distinct. Email: "
        "u<hash>@<domain>, unique. PersonName, Phone: plausible values chosen by the keyed hash. Partial: "
        "all but the last `keep` characters replaced by '*'. Constant: `value` (NULL stays NULL). Null. "
        "DateShift: a date or timestamp moved by a keyed 1..maxDays days, earlier or later."))
    keep: int | None = Field(default=None, ge=0, le=64, description="Partial: characters kept at the end "
                             "(default 4).")
    value: str | None = Field(default=None, max_length=256, description="Constant: the replacement.")
    max_days: int | None = Field(default=None, ge=1, le=3650, description="DateShift: the largest shift in "
                                 "days (default 30).")
    domain: str | None = Field(default=None, max_length=253, pattern=RESERVED_DOMAIN,
                               description="Email: a reserved domain (default example.invalid).")


class KeySecretRef(Model):
    name: str = Field(max_length=253, pattern=DNS_LABEL, description="Secret in the same namespace.")
    key: str = Field(default="key", max_length=253, description="The key holding the masking key "
                     "(at least 16 bytes; e.g. `openssl rand -base64 32`).")


class MaskingPolicySpec(Model):
    key_secret_ref: KeySecretRef = Field(description="The project's masking key. Every branch masked with the "
                                         "same key gets the same values, so keep one key per project.")
    rules: list[MaskingRule] = Field(
        default_factory=list, max_length=1024,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["table", "column"]},
        description="One rule per masked column.")
    not_personal: list[Annotated[str, Field(max_length=191, pattern=COLUMN_REF_PATTERN)]] | None = Field(
        default=None, max_length=4096, json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Columns (`table.column` or `schema.table.column`) classified as not personal: copied as "
                    "they are although their name or type looks personal.")
    unclassified: Unclassified = Field(
        default="Refuse", description="Refuse (default): a branch fails (UnclassifiedColumns) while the source "
        "has columns that look personal and no rule or notPersonal covers. Allow: copy those as they are.")
    personal_name_patterns: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None, max_length=256, description="Replaces the built-in list of column-name patterns "
        "(case-insensitive regular expressions) that look personal.")
    personal_types: list[Annotated[str, Field(min_length=1, max_length=63)]] | None = Field(
        default=None, max_length=64, description="Replaces the built-in list of column types that are "
        "personal whatever the name (inet, cidr, macaddr, macaddr8).")


class MaskingPolicy(Model):
    """Masking rules and the key of a project: named by spec.database.masking of Full branches."""

    api_version: str = "envbranch.io/v1alpha1"
    kind: str = "MaskingPolicy"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: MaskingPolicySpec
