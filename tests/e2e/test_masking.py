"""Masked branches end to end: the operator, the real API server and PostgreSQL, a root holding
personal data (domains, a CHECK, a unique index and a foreign key on the masked columns)."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from psycopg import sql
from typer.testing import CliRunner

from envbranch.api.common import GROUP, VERSION
from envbranch.cli.main import app
from envbranch_testing import personal_schema as personal_db
from envbranch_testing.controlplane import ControlPlane
from envbranch_testing.operator import OperatorProcess
from envbranch_testing.postgres import Postgres
from envbranch_testing.processes import wait_until
from envbranch_testing.scenario import Project, assert_nothing_left

ROWS = 20_000
runner = CliRunner()


@pytest.fixture
def personal(project: Project, controlplane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> Iterator[bytes]:
    """`production`, a root with spec.personalData adopting a database of customers, and MaskingPolicy
    `pii` with its key Secret; yields the key. The CLI talks to the same API server."""
    dbname = f"crm_{project.namespace.replace('-', '_')}"
    with project.pg.connect(role=project.pg.admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with project.pg.connect(dbname, role=project.pg.admin) as conn:
        conn.execute(personal_db.PERSONAL_SCHEMA)
        conn.execute(personal_db.fill_sql(ROWS))
    project.allow_adoption(dbname)
    project.apply_env("production", {"database": {"serverRef": "main", "name": dbname}, "personalData": True})
    project.wait_phase("production", "Active")
    key = base64.b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes)
    project.core.create_namespaced_secret(project.namespace, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "masking-key"},
        "data": {"key": base64.b64encode(key).decode()}})
    project.custom.create_namespaced_custom_object(GROUP, VERSION, project.namespace, "maskingpolicies", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "MaskingPolicy", "metadata": {"name": "pii"},
        "spec": personal_db.policy_spec("masking-key")})
    monkeypatch.setenv("KUBECONFIG", str(controlplane.kubeconfig))
    monkeypatch.setenv("COLUMNS", "200")
    yield key


def _source_db(project: Project) -> str:
    return f"crm_{project.namespace.replace('-', '_')}"


def _digest(pg: Postgres, dbname: str) -> dict[str, object]:
    """Per table: row count and a digest of every row."""
    with pg.connect(dbname) as conn:
        return {t: conn.execute(sql.SQL("SELECT count(*), md5(string_agg(x::text, '|' ORDER BY x::text)) FROM {} x"
                                        ).format(sql.Identifier(t))).fetchone()
                for t in ("customers", "orders", "newsletter", "visits")}


class _Watch:
    """The statement log set to record everything, and pg_stat_activity sampled, while branches copy."""

    def __init__(self, pg: Postgres) -> None:
        self.pg, self.seen, self.stop = pg, [], threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.log_start = 0

    def __enter__(self) -> _Watch:
        log = self.pg.base_dir / "postgres.log"
        self.log_start = log.stat().st_size if log.exists() else 0
        self._log_statements(True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._log_statements(False)

    def _log_statements(self, on: bool) -> None:
        with self.pg.connect() as conn:
            conn.execute("ALTER SYSTEM SET log_statement = 'all'" if on else "ALTER SYSTEM RESET log_statement")
            conn.execute("SELECT pg_reload_conf()")

    def _sample(self) -> None:
        with self.pg.connect() as conn:
            while not self.stop.is_set():
                self.seen += [str(r[0]) for r in conn.execute(
                    "SELECT query FROM pg_stat_activity WHERE application_name = 'envbranch'").fetchall()]

    def log(self) -> str:
        with open(Path(self.pg.base_dir / "postgres.log"), "rb") as f:
            f.seek(self.log_start)
            return f.read().decode(errors="replace")


def test_masked_branches_of_a_personal_data_root(personal: bytes, project: Project,
                                                 operator: OperatorProcess) -> None:
    pg, ns, source = project.pg, project.namespace, _source_db(project)
    # Without masking, a Full branch of a root holding personal data fails and makes nothing.
    project.apply_env("unmasked", {"source": "production", "mode": "Full"})
    status = project.wait_stalled("unmasked")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "MaskingRequired", ready
    assert_nothing_left(project, "unmasked", project.uid("unmasked"))

    masked = {"source": "production", "mode": "Full", "database": {"masking": "pii"}}
    with _Watch(pg) as watch:
        project.apply_env("masked-a", masked)
        project.apply_env("masked-b", masked)
        status_a = project.wait_phase("masked-a", "Active", "Failed", timeout=180)
        status_b = project.wait_phase("masked-b", "Active", "Failed", timeout=180)
    assert status_a["phase"] == "Active" and status_b["phase"] == "Active", (status_a, status_b)
    assert status_a["database"]["strategy"] == "Dump"  # an idle source on the same server, yet no Template
    assert status_a["masking"] == {"policy": "pii", "columns": 11}
    data_masked = next(c for c in status_a["conditions"] if c["type"] == "DataMasked")
    assert data_masked["status"] == "True" and "11 columns masked by MaskingPolicy pii" in data_masked["message"]
    assert any(r == "DataMasked" and "pii" in m for r, m in project.events("masked-a"))
    db_a, db_b = status_a["database"]["name"], status_b["database"]["name"]
    counts = {t: row[0] for t, row in _digest(pg, source).items()}  # type: ignore[index]
    assert {t: row[0] for t, row in _digest(pg, db_a).items()} == counts  # type: ignore[index]
    assert counts == {"customers": ROWS, "orders": 2 * ROWS, "newsletter": ROWS // 3 + 1, "visits": ROWS}
    # The same source value masks alike in two branches (and, by the FK, in two tables).
    assert _digest(pg, db_a) == _digest(pg, db_b)
    samples = personal_db.sample_values(ROWS)
    assert personal_db.found_in_tables(pg, source, samples) == samples
    assert personal_db.found_in_tables(pg, db_a, samples) == [] and personal_db.found_on_disk(pg, db_a, samples) == []

    # A branch of the masked branch copies its masked rows as they are: Template allowed.
    project.apply_env("masked-child", {"source": "masked-a", "mode": "Full"})
    child = project.wait_phase("masked-child", "Active", "Failed")
    assert child["phase"] == "Active", child
    assert child["database"]["strategy"] == "Template"
    assert child["masking"] == {"policy": "pii", "columns": 11, "inherited": True}

    check = runner.invoke(app, ["masking", "check", "pii", "--against", "production", "-n", ns])
    assert check.exit_code == 0, check.output
    assert "11 columns masked" in check.output and "no unclassified personal columns" in check.output
    shown = runner.invoke(app, ["status", "masked-a", "-n", ns, "-o", "yaml"])
    assert shown.exit_code == 0 and "pii" in shown.output

    assert any("envbranch_mask_key" in q for q in watch.seen), "the sampling never saw a masked read"
    server_log = watch.log()
    assert 'COPY "pg_temp"."envbranch_mask_key" FROM STDIN' in server_log
    events = json.dumps([e.to_dict() for e in project.core.list_namespaced_event(ns).items], default=str)
    statuses = json.dumps([project.status(n) for n in ("masked-a", "masked-b", "masked-child")])
    for trace in personal_db.key_traces(personal):
        for where, text in {"operator log": operator.log(), "Events": events, "status": statuses,
                            "CLI output": check.output + shown.output, "server log": server_log,
                            "pg_stat_activity": "\n".join(watch.seen)}.items():
            assert trace not in text, f"the masking key is in the {where}"


def test_an_unclassified_personal_column_stops_the_branch_with_its_name(personal: bytes,
                                                                        project: Project) -> None:
    with project.pg.connect(_source_db(project), role=project.pg.admin) as conn:
        conn.execute("ALTER TABLE customers ADD COLUMN home_address text")
    check = runner.invoke(app, ["masking", "check", "pii", "--against", "production", "-n", project.namespace])
    assert check.exit_code == 1 and "public.customers.home_address (text)" in check.output, check.output
    project.apply_env("masked", {"source": "production", "mode": "Full", "database": {"masking": "pii"}})
    status = project.wait_stalled("masked")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "UnclassifiedColumns" and "public.customers.home_address" in ready["message"]
    assert_nothing_left(project, "masked", project.uid("masked"))
    # The owner classifies it; the retry then branches.
    project.custom.patch_namespaced_custom_object(GROUP, VERSION, project.namespace, "maskingpolicies", "pii", {
        "spec": {"notPersonal": ["customers.country", "customers.home_address"]}})
    project.annotate("masked", {"envbranch.io/retry": "1"})
    assert project.wait_phase("masked", "Active", timeout=180)["masking"]["policy"] == "pii"


def test_a_masking_policy_is_validated_when_applied(personal: bytes, project: Project) -> None:
    bad = {"keySecretRef": {"name": "masking-key"},
           "rules": [{"table": "customers", "column": "email", "function": "Email", "domain": "gmail.com"},
                     {"table": "customers", "column": "phone", "function": "Hash", "keep": 2}]}
    with pytest.raises(client.ApiException) as info:
        project.custom.create_namespaced_custom_object(GROUP, VERSION, project.namespace, "maskingpolicies", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "MaskingPolicy", "metadata": {"name": "bad"}, "spec": bad})
    assert info.value.status == 422
    assert "keep is a parameter of function Partial only" in str(info.value.body)
    assert "domain" in str(info.value.body)
    with pytest.raises(client.ApiException) as system:
        project.apply_env("schema-masked", {"source": "production", "mode": "System",
                                            "database": {"masking": "pii"}})
    assert "spec.database.masking needs mode Full" in str(system.value.body)


def test_a_refresh_of_a_masked_branch_masks_the_new_copy_again(personal: bytes, project: Project) -> None:
    """A refresh goes through the branch's own clone: the new copy is masked in the source's read again."""
    pg = project.pg
    project.apply_env("masked-r", {"source": "production", "mode": "Full", "database": {"masking": "pii"}})
    db = project.wait_phase("masked-r", "Active", timeout=180)["database"]["name"]
    before = _digest(pg, db)
    with pg.connect() as conn:
        oid = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (db,)).fetchone()
    project.annotate("masked-r", {"envbranch.io/refresh": "again"})
    status = wait_until(lambda: (s := project.status("masked-r")).get("refresh", {}).get("stage") in ("Done", "Failed")
                        and s, timeout=180, what="the masked branch's refresh")
    assert status["refresh"]["stage"] == "Done" and status["lastRefresh"]["strategy"] == "Dump", status
    with pg.connect() as conn:
        assert conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (db,)).fetchone() != oid
    samples = personal_db.sample_values(ROWS)
    assert personal_db.found_in_tables(pg, db, samples) == []
    assert _digest(pg, db) == before  # the same source rows, masked alike by the same key
