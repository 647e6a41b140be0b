"""Engine errors the reconcile layer can act on: transient (retry) or permanent (roll back).
Messages name what to fix and never carry a password."""

from __future__ import annotations

import re
import subprocess

import psycopg

DISK_FULL = "53100"
# What the server and the tools say when a disk is full; it wins over any transient wording (a server that
# could not write its WAL stops, and "server closed the connection" must not make the copy start again).
_DISK_FULL_WORDS = ("No space left on device", "could not extend file")
# SQLSTATE classes and codes worth retrying.
_TRANSIENT_CLASSES = ("08",)          # connection exceptions
_TRANSIENT_CODES = {
    "57P01", "57P02", "57P03",        # admin/crash shutdown, cannot connect now
    "55P03",                          # lock_not_available (lock_timeout)
    "55006",                          # object_in_use: the template source has other sessions
    "53300",                          # too_many_connections
    "40001", "40P01",                 # serialization failure, deadlock
    "57014",                          # query_canceled (statement_timeout)
}
# What psql/pg_dump print for the same connection failures: the server unreachable, starting or
# stopping, or a session ended under it (57P01 admin shutdown reads "terminating connection due to
# administrator command").
_TRANSIENT_TOOL_ERRORS = ("could not connect", "Connection refused", "the database system is",
                          "terminating connection due to administrator command",
                          "server closed the connection unexpectedly")
# libpq's and the server's words for a TLS setup that does not hold, with what to fix. Retrying
# cannot cure any of them, and none may be answered by falling back to plain text.
_SERVER_CERT = "the server certificate must be signed by spec.tls's ca.crt and valid now"
_CLIENT_CERT = ("spec.tls's tls.crt/tls.key must be signed by a CA the server trusts, valid now, with the admin "
                "role as its common name")
_TLS_ERRORS = (
    ("SSL support is not compiled in", "these PostgreSQL client tools were built without TLS: install ones "
     "with it (e.g. Debian's postgresql-client) or point ENVBRANCH_PG_BINDIR at them"),
    ("does not match host name", "spec.host must be a name or address the server certificate lists"),
    ("server does not support SSL", "the server has TLS off, and sslMode requires it"),
    ("root certificate file", "no CA to check the server certificate with: set spec.tls"),
    ("rejects connection for host", "the server requires TLS: set sslMode (verify-full) and spec.tls"),
    ("requires a valid client certificate", _CLIENT_CERT),
    ("certificate authentication failed", _CLIENT_CERT),
    ("alert unknown ca", _CLIENT_CERT),
    ("alert certificate expired", _CLIENT_CERT),
    ("alert bad certificate", _CLIENT_CERT),
    ("certificate verify failed", _SERVER_CERT),
    ("private key file", _CLIENT_CERT),
    ("certificate file", _CLIENT_CERT),
    ("SSL error", "the TLS handshake failed"),
)


def tls_hint(text: str) -> str | None:
    """What to fix when `text` is a TLS failure, else None."""
    return next((hint for words, hint in _TLS_ERRORS if words in text), None)


_HINTS = {
    "42501": "the DatabaseServer's admin role lacks a privilege (it needs CREATEDB and CREATEROLE, and "
             "membership in the roles that own the source database's objects)",
    "3D000": "the database does not exist",
    "53100": "the PostgreSQL server is out of disk space",
    "28P01": "wrong password for the DatabaseServer's admin role (check adminSecretRef)",
    "28000": "the server refused the admin role (check pg_hba.conf and adminSecretRef)",
    "55006": "the source database has other sessions, so it cannot be used as a template now",
}


class EngineError(Exception):
    def __init__(self, message: str, *, transient: bool, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.sqlstate = sqlstate


class TransientError(EngineError):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message, transient=True, sqlstate=sqlstate)


class PermanentError(EngineError):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message, transient=False, sqlstate=sqlstate)


class NotOurs(PermanentError):
    """The database or role exists but carries another Environment's tag (or none): never dropped."""


class TlsError(PermanentError):
    """The TLS handshake or the server's TLS rules refused the connection."""


class DiskFull(PermanentError):
    """The server ran out of disk space (SQLSTATE 53100, or a tool's "No space left on device"): never
    retried, so the partial copy is dropped at once and production's writes resume."""


class InsufficientStorage(PermanentError):
    """The copy would not fit the DatabaseServer's storage budget: refused before anything is copied."""


class ReplicaUnavailable(TransientError):
    """No listed replica answers as a standby of the source's server (retried, then the branch fails)."""


class DumpNeeded(Exception):
    """The clone would take the Dump path, and the caller asked to run that elsewhere (the copy lane)."""


class SourceBusy(TransientError):
    """The template source has other sessions (SQLSTATE 55006)."""


# Lines of server messages that quote table rows: "DETAIL:  Failing row contains (…)", "DETAIL:  Key
# (email)=(…) already exists.", "CONTEXT:  COPY t, line 3: "…"". Row data never reaches a condition.
_ROW_DATA = (
    (re.compile(r"(Failing row contains).*"), r"\1 (row data removed)"),
    (re.compile(r"(Key \(.*?\))=\(.*"), r"\1=(row data removed)"),
    (re.compile(r"(COPY [^,]+, line \d+)(, column [^:]+)?: .*"), r"\1\2 (row data removed)"),
)


def scrub(text: str, secrets: tuple[str, ...] = (), tls_dirs: tuple[str | None, ...] = ()) -> str:
    """`secrets` replaced by ***, private TLS folders by <tls>, and row data quoted by the server cut out."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for folder in tls_dirs:
        if folder:
            text = text.replace(folder, "<tls>")
    for pattern, replacement in _ROW_DATA:
        text = pattern.sub(replacement, text)
    return text


def classify(exc: BaseException, secrets: tuple[str, ...] = (), *,
             tls_dirs: tuple[str | None, ...] = ()) -> EngineError:
    """Wrap a psycopg or subprocess failure; `secrets` are removed from the message, and the path of
    the private TLS folders are shortened to `<tls>`."""
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = _HINTS.get(state or "")
        message = scrub(f"{first_line}" + (f" ({hint})" if hint else ""), secrets, tls_dirs)
        if state == "55006":
            return SourceBusy(message, state)
        if state == DISK_FULL or any(w in first_line for w in _DISK_FULL_WORDS):
            return DiskFull(message, DISK_FULL)
        if state is None and isinstance(exc, psycopg.OperationalError):
            # No SQLSTATE: the connection itself failed. Authentication and TLS are not worth retrying.
            if tls := tls_hint(first_line):
                return TlsError(scrub(f"{first_line} ({tls})", secrets, tls_dirs))
            if "password authentication failed" in first_line or "no pg_hba.conf entry" in first_line:
                return PermanentError(scrub(f"{first_line} ({_HINTS['28P01']})", secrets, tls_dirs), "28P01")
            return TransientError(message)
        if state and (state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_CODES):
            return TransientError(message, state)
        return PermanentError(message, state)
    if isinstance(exc, subprocess.CalledProcessError):
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        tool = str(exc.cmd[0]).rsplit("/", 1)[-1] if exc.cmd else "tool"
        lines = [scrub(ln, secrets, tls_dirs) for ln in stderr.strip().splitlines() if ln.strip()][-3:]
        text = scrub(f"{tool} failed (exit {exc.returncode}): {' | '.join(lines)}", secrets, tls_dirs)
        if tls := tls_hint(stderr):
            return TlsError(f"{text} ({tls})")
        if any(w in stderr for w in _DISK_FULL_WORDS):
            return DiskFull(f"{text} ({_HINTS[DISK_FULL]})", DISK_FULL)
        transient = any(s in stderr for s in _TRANSIENT_TOOL_ERRORS)
        return TransientError(text) if transient else PermanentError(text)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return TransientError(scrub(str(exc), secrets, tls_dirs))
    return PermanentError(scrub(f"{type(exc).__name__}: {exc}", secrets, tls_dirs))
