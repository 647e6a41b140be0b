"""Planning a masked branch: whether masking is required (a root's spec.personalData), the policy and
its key read, the source's columns classified, all before anything is created. The plan flows into
the clone's arguments (so a refresh that re-runs the clone masks the same way)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from envbranch import postgres as engine
from envbranch.api import common
from envbranch.api.maskingpolicy import MaskingPolicySpec
from envbranch.branching import connection
from envbranch.branching.context import OperatorContext
from envbranch.branching.errors import Invalid, Waiting
from envbranch.kube import resources
from envbranch.postgres import masking as pg_masking

# Column names that look personal (case-insensitive, searched in the name): a policy may replace the
# list (personalNamePatterns). docs/security.md shows it.
PERSONAL_NAME_PATTERNS: tuple[str, ...] = (
    r"e_?mail",                                                       # e-mail
    r"(^|_)(first|last|full|middle|given|family|sur|maiden|display|contact|customer|person|user)_?name$",
    r"^name$",                                                        # name
    r"phone|mobile|msisdn|(^|_)fax($|_)|^tel(ephone)?$",              # phone
    r"address|street|postal_?code|zip_?code|postcode",                # address
    r"birth|(^|_)dob($|_)",                                           # birth date
    r"ssn|social_?security|national_?id|passport|tax_?id|driver_?licen",  # national ids
    r"iban|(^|_)bic($|_)|bank_?account|account_?number",              # bank accounts
    r"card_?(number|num|no)|(^|_)pan($|_)|cc_?num|(^|_)cvv|(^|_)cvc",  # card numbers
    r"token|secret|passw|(^|_)pwd($|_)|api_?key|private_?key|credential",  # tokens, secrets, passwords
    r"(^|_)ip($|_)|ip_?addr|user_?agent",                             # IP addresses
)
# Types that are personal whatever the column's name (personalTypes replaces the list).
PERSONAL_TYPES: tuple[str, ...] = ("inet", "cidr", "macaddr", "macaddr8")


def column_key(ref: str) -> tuple[str, str, str]:
    """`table.column` or `schema.table.column` -> (schema, table, column); public by default."""
    parts = ref.split(".")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("public", parts[0], parts[1])


def table_key(ref: str) -> tuple[str, str]:
    schema, _, table = ref.rpartition(".")
    return schema or "public", table


def resolved_masks(spec: MaskingPolicySpec) -> dict[tuple[str, str, str], pg_masking.ColumnMask]:
    masks = {}
    for rule in spec.rules:
        given: dict[str, Any] = {"keep": rule.keep, "value": rule.value, "max_days": rule.max_days,
                                 "domain": rule.domain}
        masks[(*table_key(rule.table), rule.column)] = pg_masking.ColumnMask(
            rule.function, **{k: v for k, v in given.items() if v is not None})
    return masks


def looks_personal(column: pg_masking.SourceColumn, patterns: Sequence[str], types: Iterable[str]) -> bool:
    if column.shape.type_name in set(types):
        return True
    return any(re.search(p, column.column, re.IGNORECASE) for p in patterns)


def unclassified(spec: MaskingPolicySpec, columns: list[pg_masking.SourceColumn]) -> list[str]:
    """`schema.table.column (type)` of each column that looks personal and that neither a rule nor
    notPersonal covers; a partitioned table is named once, by its root."""
    covered = set(resolved_masks(spec)) | {column_key(ref) for ref in spec.not_personal or []}
    patterns = spec.personal_name_patterns if spec.personal_name_patterns is not None else PERSONAL_NAME_PATTERNS
    types = spec.personal_types if spec.personal_types is not None else PERSONAL_TYPES
    found: dict[str, None] = {}
    for col in columns:
        owners = {(col.schema, col.table)} | ({col.root} if col.root else set())
        if any((*owner, col.column) in covered for owner in owners):
            continue
        if looks_personal(col, patterns, types):
            schema, table = col.root or (col.schema, col.table)
            found[f"{schema}.{table}.{col.column} ({col.shown_type})"] = None
    return list(found)


@dataclass(frozen=True)
class MaskPlan:
    """What the branch's status says, and (None when the source's rows are masked already) what the
    clone masks with."""

    policy: str
    columns: int
    engine: pg_masking.Masking | None


def read_policy(ctx: OperatorContext, project: str, name: str) -> tuple[MaskingPolicySpec, bytes]:
    """The policy and its key. A missing one is waited for (GitOps applies them together)."""
    body = resources.get(ctx.kube, common.MASKINGPOLICIES, project, name)
    if body is None:
        raise Waiting("MaskingPolicyNotFound", f"waiting for MaskingPolicy {name!r} in namespace {project}",
                      ctx.settings.source_wait)
    spec = MaskingPolicySpec.model_validate(body.get("spec") or {})
    ref = spec.key_secret_ref
    values = resources.read_values(ctx.kube, "Secret", project, ref.name, (ref.key,))
    if values is None:
        raise Waiting("MaskingKeyNotFound", f"waiting for Secret {ref.name!r} (the masking key of policy "
                      f"{name!r}) in namespace {project}", ctx.settings.source_wait)
    key = values.get(ref.key, b"").strip()
    if len(key) < pg_masking.MIN_KEY_BYTES:
        raise Invalid("MaskingKeyInvalid", f"Secret {ref.name!r} must hold a masking key of at least "
                      f"{pg_masking.MIN_KEY_BYTES} bytes under key {ref.key!r}")
    return spec, key


def classify_source(server: engine.Server, spec: MaskingPolicySpec,
                    database: str) -> tuple[list[pg_masking.SourceColumn], list[str]]:
    """The source's columns, and what of them (and of its large objects) the policy leaves unclassified."""
    with server.connect(database) as conn:
        columns = pg_masking.source_columns(conn)
        large_objects = pg_masking.large_object_count(conn)
    found = unclassified(spec, columns)
    if large_objects:
        found.append(f"large objects ({large_objects}): no rule can mask them")
    return columns, found


def check_columns(server: engine.Server, policy: str, spec: MaskingPolicySpec,
                  database: str) -> list[pg_masking.SourceColumn]:
    """The source's columns, once nothing unclassified is left (or the policy allows it)."""
    columns, found = classify_source(server, spec, database)
    if found and spec.unclassified == "Refuse":
        raise Invalid("UnclassifiedColumns", f"MaskingPolicy {policy!r} leaves columns that look personal "
                      f"unclassified: {', '.join(found)}; add a rule or list them in notPersonal")
    return columns


def masking_of(env: dict[str, Any]) -> dict[str, Any] | None:
    return (env.get("status") or {}).get("masking")


MAX_LINEAGE = 64


def holds_personal_data(ctx: OperatorContext, project: str, env: dict[str, Any]) -> bool:
    """Whether `env`'s rows are a personal-data root's, unmasked: walked up live through unmasked
    Full branches to the root and its spec.personalData (a root marked later counts at once)."""
    for _ in range(MAX_LINEAGE):
        spec = env.get("spec") or {}
        if not spec.get("source"):
            return bool(spec.get("personalData"))
        if masking_of(env) or spec.get("mode") != "Full":
            return False  # masked rows, or no rows at all
        parent = resources.get(ctx.kube, common.ENVIRONMENTS, project, str(spec["source"]))
        if parent is None:
            return False  # a broken lineage (docs/security.md, Known limits)
        env = parent
    return False


def plan_masking(ctx: OperatorContext, project: str, policy: str | None, mode: str | None,
                 parent: dict[str, Any] | None, source: tuple[str | None, str | None]) -> MaskPlan | None:
    """The branch's masking, or None: refused (MaskingRequired) when a Full branch of personal data
    names no policy; from a masked source without a new policy, the source's masking, inherited."""
    if parent is None or mode != "Full":
        return None
    inherited = masking_of(parent)
    if policy is None or (inherited and inherited.get("policy") == policy):
        if inherited:
            return MaskPlan(str(inherited["policy"]), int(inherited.get("columns") or 0), None)
        if holds_personal_data(ctx, project, parent):
            raise Invalid("MaskingRequired", f"source {parent['metadata']['name']!r} holds personal data "
                          "(spec.personalData of its root): a Full branch needs spec.database.masking naming a "
                          "MaskingPolicy, or mode System")
        return None
    spec, key = read_policy(ctx, project, policy)
    server, database = source
    assert server and database
    columns = check_columns(connection.server_info(ctx, project, server), policy, spec, database)
    masking = pg_masking.Masking(policy, key, resolved_masks(spec),
                                 frozenset((c.schema, c.table, c.column) for c in columns))
    try:
        count = pg_masking.TableReads(masking, columns).column_count
    except pg_masking.MaskingError as exc:
        raise Invalid("MaskingPolicyInvalid", f"MaskingPolicy {policy!r}: {exc}") from None
    return MaskPlan(policy, count, masking)

