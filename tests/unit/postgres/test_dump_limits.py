"""The byte-rate cap shared by a Dump's streams, the stream count's slices, the limits' API fields and
the disk-full classification."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pydantic
import pytest

from envbranch.api.environment import DumpLimits, parse_rate
from envbranch.postgres import cloning, errors, spool, throttle


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_streams_share_one_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(throttle.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(throttle.time, "sleep", clock.sleep)
    rate = throttle.ByteRate(1000)
    # Two streams booking 10 chunks of 100 bytes each: 2000 bytes at 1000 B/s end two seconds on.
    waits: list[float] = []
    for _ in range(10):
        for _stream in range(2):
            before = clock.now
            rate.take(100)
            waits.append(clock.now - before)
    assert clock.now == pytest.approx(1.9)  # the last chunk starts at 1.9 s and takes its 0.1 s after
    assert waits[0] == 0  # the first chunk goes at once


def test_paced_yields_every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(throttle.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(throttle.time, "sleep", clock.sleep)
    chunks = [b"a" * 500, b"b" * 500, b"c" * 500]
    assert list(throttle.ByteRate(500).paced(chunks)) == chunks
    assert clock.now == pytest.approx(2.0)


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        throttle.ByteRate(0)


def test_one_stream_never_splits_a_table() -> None:
    big = cloning._Table("public", "big", 10 * cloning.SPLIT_BYTES, ["id"])
    assert cloning._slices([big], 1) == [big]
    slices = cloning._slices([big], 3)
    assert [s.blocks for s in slices][-1] is not None and slices[-1].blocks[1] is None  # type: ignore[index]
    assert len(slices) == 3


def test_the_copy_out_statement_names_columns_and_slices() -> None:
    whole = cloning._Table("s", "T", 1, ["a", "B"])
    sliced = cloning._Table("s", "T", 1, ["a", "B"], (0, 10))
    assert cloning.copy_out_statement(whole).as_string(None) == 'COPY "s"."T" ("a", "B") TO STDOUT (FORMAT binary)'
    assert cloning.copy_out_statement(sliced).as_string(None) == (
        "COPY (SELECT \"a\", \"B\" FROM ONLY \"s\".\"T\" WHERE ctid >= '(0,0)'::tid AND ctid < '(10,0)'::tid) "
        "TO STDOUT (FORMAT binary)")


@pytest.mark.parametrize(("value", "rate"), [("20Mi", 20 * 1024**2), ("1500k", 1_500_000), ("1048576", 1024**2),
                                              ("2G", 2 * 10**9)])
def test_max_rate_is_a_quantity_of_bytes_per_second(value: str, rate: int) -> None:
    assert parse_rate(value) == rate
    assert DumpLimits.model_validate({"maxRate": value}).max_rate == value


@pytest.mark.parametrize("value", ["512Ki", "1000000", "20MB", "0", "-5Mi", "1.5Mi"])
def test_a_rate_below_the_floor_or_not_a_quantity_is_refused(value: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        DumpLimits.model_validate({"maxRate": value})


@pytest.mark.parametrize("streams", [0, 9])
def test_streams_are_bounded(streams: int) -> None:
    with pytest.raises(pydantic.ValidationError):
        DumpLimits.model_validate({"streams": streams})


def test_disk_full_is_never_retried_whatever_else_the_tool_said() -> None:
    stderr = (b'psql:<stdin>:1: ERROR:  could not extend file "base/16384/16390": No space left on device\n'
              b"server closed the connection unexpectedly\n")
    found = errors.classify(subprocess.CalledProcessError(3, ["/usr/bin/psql"], stderr=stderr), ("sekrit",))
    assert isinstance(found, errors.DiskFull) and not found.transient and found.sqlstate == "53100"
    assert "out of disk space" in found.message


def test_a_spool_is_used_only_with_a_cap_and_room_for_the_rows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    tables = [cloning._Table("public", "big", 1000, ["id"]), cloning._Table("public", "small", 100, ["id"])]
    free = {"bytes": 1210}
    monkeypatch.setattr(spool.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**6, 0, free["bytes"]))
    room = spool.Spool(str(tmp_path))
    with cloning._spool_for(cloning.DumpOptions(max_rate=1 << 20, spool=room), tables) as held:
        assert held is not None and Path(held).parent == tmp_path and Path(held).stat().st_mode & 0o777 == 0o700
        assert room.reserved_bytes == 1210
    assert room.reserved_bytes == 0 and list(tmp_path.iterdir()) == []
    with cloning._spool_for(cloning.DumpOptions(spool=room), tables) as held:
        assert held is None  # no cap: streamed at once
    free["bytes"] = 1209  # a tenth over the tables' size is needed
    with cloning._spool_for(cloning.DumpOptions(max_rate=1 << 20, spool=room), tables) as held:
        assert held is None
    assert "streams at its maxRate instead" in caplog.text


def test_copies_share_the_spool_and_its_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(spool.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 0, 10**9))
    room = spool.Spool(str(tmp_path), limit=1000)  # the emptyDir's sizeLimit, far below the disk's free space
    with room.reserved(600) as first:
        with room.reserved(600) as second:
            assert first is not None and second is None  # the two together would pass the limit
        with room.reserved(400) as third:
            assert third is not None and third != first
    assert room.reserved_bytes == 0
