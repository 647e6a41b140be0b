"""Branch database and role names: valid PostgreSQL identifiers of at most 63 bytes, stable for the
same input, and never the same for two (project, environment) pairs.

Projects and environments are DNS labels (a-z, 0-9, '-', never '-' first or last). The readable form
maps '-' to '_' in each and joins them with '__': `shop-a`/`b` is `shop_a__b`, `shop`/`a-b` is
`shop__a_b`. It holds exactly one '__' and never '___', so it reads back to one pair. Anything else
(a '--' inside a label, a name too long, not a DNS label) gets the hashed form
`<readable prefix>___<hash of the pair>`, which always holds '___' and so never equals a readable one.
"""

from __future__ import annotations

import hashlib
import re

MAX_IDENTIFIER_BYTES = 63
_HASH_LEN = 12
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _readable(value: str) -> str | None:
    if not _LABEL.fullmatch(value) or "--" in value:
        return None
    return value.replace("-", "_")


def _slug(value: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", value.lower())).strip("_") or "x"


def _name(project: str, environment: str, suffix: str) -> str:
    p, e = _readable(project), _readable(environment)
    if p is not None and e is not None:
        name = f"{p}__{e}{suffix}"
        if len(name) <= MAX_IDENTIFIER_BYTES:
            return name
    digest = hashlib.sha256(f"{project}\x00{environment}".encode()).hexdigest()[:_HASH_LEN]
    keep = MAX_IDENTIFIER_BYTES - len(suffix) - _HASH_LEN - 3
    prefix = f"{_slug(project)}_{_slug(environment)}"[:keep].rstrip("_")
    return f"{prefix}___{digest}{suffix}"


def branch_database_name(project: str, environment: str) -> str:
    return _name(project, environment, "")


def branch_role_name(project: str, environment: str) -> str:
    return _name(project, environment, "_owner")
