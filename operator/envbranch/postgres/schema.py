"""The schema of a database as text (`pg_dump --schema-only`), normalised so that two environments'
schemas compare equal when only their names, owners and envbranch tags differ."""

from __future__ import annotations

import re
import subprocess

from envbranch.postgres.errors import classify
from envbranch.postgres.server import Server
from envbranch.postgres.tags import TAG_PREFIX
from envbranch.postgres.tools import find_client_tools

DATABASE_PLACEHOLDER = "<database>"
OWNER_PLACEHOLDER = "-"

# Lines that say how the dump was made, not what the schema is.
_NOISE = (
    re.compile(r"^SET\s"),
    re.compile(r"^SELECT pg_catalog\.set_config\("),
    re.compile(r"^\\(un)?restrict\s"),                 # psql 17.6+/18: a random key per dump
    re.compile(r"^-- Dumped (from|by) "),
    re.compile(r"^ALTER .* OWNER TO .*;$"),
    re.compile(r"^COMMENT ON .* IS '" + re.escape(TAG_PREFIX) + r"[0-9a-fA-F-]*';$"),
)
_OWNER = re.compile(r"(; Owner: )[^;\n]*")


def schema_dump(server: Server, dbname: str) -> str:
    """`pg_dump --schema-only` of `dbname` (owners and privileges left out: every environment has
    its own role). Failures leave as classified EngineErrors without the password."""
    with server.connect(dbname) as conn:
        major = int(conn.info.server_version) // 10000
    tools = find_client_tools(major)
    with server.tls_files() as tls_server:
        try:
            done = subprocess.run(
                [tools.path("pg_dump"), "--schema-only", "--no-owner", "--no-privileges"],
                env=tls_server.env(dbname), capture_output=True, check=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise classify(exc, server.secrets(), tls_dirs=(tls_server.tls_dir,)) from None
    return done.stdout.decode()


def normalise_schema(dump: str, dbname: str) -> str:
    """The dump without SET lines, dump headers, owners and envbranch UID comments, the database's
    own name replaced by a placeholder, blank-line runs collapsed to one."""
    name = re.compile(r'(?<![\w$])("?)' + re.escape(dbname) + r'\1(?![\w$])')
    lines: list[str] = []
    for raw in dump.splitlines():
        line = raw.rstrip()
        if any(p.search(line) for p in _NOISE):
            continue
        line = _OWNER.sub(r"\g<1>" + OWNER_PLACEHOLDER, line)
        line = name.sub(DATABASE_PLACEHOLDER, line)
        if not line and (not lines or not lines[-1]):
            continue
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""
