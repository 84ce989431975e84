"""Journal benchmarks (pytest-benchmark): figures, never a pass/fail on time.

Run: .venv/bin/python -m pytest -q --benchmark-enable --benchmark-only tests/bench/test_journal_bench.py
Without --benchmark-enable (the default in pyproject) each runs once, as a smoke test.

- append + sync of 1 KiB records, batches of 1 and 64 (one sync per batch: group commit);
- beside them, the disk's own rate of a 4 KiB write + fdatasync on a plain file;
- recovery time of a 256 MiB journal full of 1 KiB records (data left on disk, load_data=False).
"""
import os

import pytest

from cypid.pyx.journal import Journal

RECORD = bytes(range(256)) * 4              # 1 KiB


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "bench", 8, 24)
    state = {"rid": 0}
    yield j, state
    j.close()


@pytest.mark.parametrize("batch", [1, 64])
def test_append_sync_1k(benchmark, journal, batch):
    j, state = journal

    def run():
        for _ in range(batch):
            state["rid"] += 1
            j.append_enqueue(state["rid"], RECORD)
            if state["rid"] > 256:
                j.append_dequeue(state["rid"] - 256)
        j.sync()

    benchmark(run)
    benchmark.extra_info["records_per_round"] = batch
    if benchmark.stats:
        benchmark.extra_info["records_per_s"] = round(batch / benchmark.stats.stats.mean)


def test_append_only_1k(benchmark, journal):
    """The append itself (memcpy into the mapping + CRC-32C + bookkeeping), no sync."""
    j, state = journal

    def run():
        for _ in range(1000):
            state["rid"] += 1
            j.append_enqueue(state["rid"], RECORD)
            if state["rid"] > 256:
                j.append_dequeue(state["rid"] - 256)

    benchmark(run)
    if benchmark.stats:
        benchmark.extra_info["appends_per_s"] = round(1000 / benchmark.stats.stats.mean)


def test_disk_4k_write_fdatasync(benchmark, tmp_path):
    """The disk's own rate: 4 KiB pwrite + fdatasync, cycling over a preallocated 1.5 MiB file."""
    path = tmp_path / "raw"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.posix_fallocate(fd, 0, 24 * 65536)
    os.fsync(fd)
    block = os.urandom(4096)
    pos = {"off": 0}

    def run():
        os.pwrite(fd, block, pos["off"])
        os.fdatasync(fd)
        pos["off"] = (pos["off"] + 4096) % (24 * 65536)

    try:
        benchmark(run)
        if benchmark.stats:
            benchmark.extra_info["syncs_per_s"] = round(1 / benchmark.stats.stats.mean)
    finally:
        os.close(fd)


@pytest.mark.slow
def test_recover_256mb(benchmark, tmp_path):
    d = tmp_path / "big"
    with Journal(d, 8, 512) as j:                  # 8 x 32 MiB = 256 MiB
        rid = 0
        while True:
            rid += 1
            try:
                j.append_enqueue(rid, RECORD)
            except OSError:
                break
        live = len(j)
        used = j.stats()["live_bytes"]

    def run():
        with Journal(d, load_data=False) as r:
            assert len(r.recovered) == live
            return r

    benchmark.pedantic(run, rounds=3 if benchmark.enabled else 1, iterations=1)
    benchmark.extra_info["live_records"] = live
    benchmark.extra_info["live_mib"] = round(used / 2 ** 20)
