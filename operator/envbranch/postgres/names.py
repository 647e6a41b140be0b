"""Branch database and role names: valid PostgreSQL identifiers of at most 63 bytes, stable for the
same input, and never colliding when long names are cut (a hash of the full input is kept)."""

from __future__ import annotations

import hashlib
import re

MAX_IDENTIFIER_BYTES = 63
_HASH_LEN = 8


def _slug(value: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", value.lower())).strip("_") or "x"


def _fit(base: str, suffix: str, full_input: str) -> str:
    name = base + suffix
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha256(full_input.encode()).hexdigest()[:_HASH_LEN]
    keep = MAX_IDENTIFIER_BYTES - len(suffix) - _HASH_LEN - 1
    return f"{base[:keep].rstrip('_')}_{digest}{suffix}"


def branch_database_name(project: str, environment: str) -> str:
    return _fit(f"{_slug(project)}_{_slug(environment)}", "", f"{project}\x00{environment}")


def branch_role_name(project: str, environment: str) -> str:
    return _fit(f"{_slug(project)}_{_slug(environment)}", "_owner", f"{project}\x00{environment}")
