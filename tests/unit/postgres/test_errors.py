"""Failure messages carry what went wrong, never the rows the server quoted."""

from __future__ import annotations

import subprocess

import pytest

from envbranch.postgres import classify
from envbranch.postgres.errors import scrub

ROW = "jane.doe@example.com"


@pytest.mark.parametrize(("line", "kept"), [
    (f'DETAIL:  Failing row contains (7, {ROW}, 555-0100).', "Failing row contains (row data removed)"),
    (f"DETAIL:  Key (email)=({ROW}) already exists.", "Key (email)=(row data removed)"),
    (f"DETAIL:  Key (tenant, email)=(3, {ROW}) is not present in table \"accounts\".",
     "Key (tenant, email)=(row data removed)"),
    (f'CONTEXT:  COPY customers, line 3: "7\t{ROW}\t555-0100"', "COPY customers, line 3 (row data removed)"),
    (f'CONTEXT:  COPY customers, line 3, column email: "{ROW}"',
     "COPY customers, line 3, column email (row data removed)"),
])
def test_row_data_is_cut_from_server_messages(line: str, kept: str) -> None:
    assert scrub(line) == line[:line.index(kept[:10])] + kept


def test_tool_failures_keep_the_error_and_lose_the_rows() -> None:
    stderr = (f'psql:<stdin>:40: ERROR:  new row for relation "customers" violates check constraint "c"\n'
              f"DETAIL:  Failing row contains (7, {ROW}).\n"
              f'CONTEXT:  COPY customers, line 1: "7\t{ROW}"\n').encode()
    message = str(classify(subprocess.CalledProcessError(3, ["/usr/bin/psql"], stderr=stderr)))
    assert ROW not in message
    assert 'violates check constraint "c"' in message and "Failing row contains (row data removed)" in message
