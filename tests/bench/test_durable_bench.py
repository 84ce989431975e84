"""Durable messaging through the whole broker: figures, never a pass/fail on time.

Run: .venv/bin/python -m pytest -q -s --benchmark-enable --benchmark-only tests/bench/test_durable_bench.py
(needs `make neutral-client`). Without --benchmark-enable each case runs once on a small count, as a
smoke test. Printed, in the same run:

- the disk's own rate of a 4 KiB append + fdatasync on a plain file in the broker's data dir (what
  a broker that synced every message could at best do);
- durable 1 KiB messages/s into a durable queue, settled (accepted) only after their journal record
  is synced, from 1 and from 8 Proton-C producers at once (group commit: many records per sync);
- the latency of a lone synchronous durable send (one message in flight at a time);
- the time a broker takes to recover a 1 GiB journal of 1 KiB messages (start to listening, and the
  store's own "Recovered ..." figure).
"""
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from proton.utils import BlockingConnection

from cypid.pyx.codec import Described, encode, ulong
from cypid.pyx.journal import Journal
from tests.support.amqp import CreateQueue

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "build" / "neutral-client"
RATE = re.compile(r"rate=(\d+) msg/s")
needs_client = pytest.mark.skipif(not (CLIENT / "amqp_send").exists(),
                                  reason="neutral client not built (make neutral-client)")
# A durable queue whose journal holds what a round sends: 16 files of 16 MiB.
BIG = {"durable": True, "qpid.file_count": 16, "qpid.file_size": 256, "qpid.max_size": 0,
       "qpid.max_count": 0}


def _enabled(request):
    return request.config.getoption("benchmark_enable", False)


def disk_sync_rate(directory, seconds=2.0):
    """4 KiB appends, each followed by fdatasync, for about ``seconds``: (ops/s, mean s)."""
    path = os.path.join(directory, "fdatasync.probe")
    block = b"\xa5" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        n = 0
        t0 = time.perf_counter()
        while True:
            os.write(fd, block)
            os.fdatasync(fd)
            n += 1
            el = time.perf_counter() - t0
            if el >= seconds and n >= 20:
                break
    finally:
        os.close(fd)
        os.unlink(path)
    return n / el, el / n


def _declare(broker, address, props):
    conn = BlockingConnection(broker.url, timeout=30)
    try:
        conn.create_sender(address, options=CreateQueue(props)).close()
    finally:
        conn.close()


def _send(broker, address, producers, count, window=0, durable=True):
    """Run ``producers`` amqp_send -d at once; (total msgs/s over the wall time, per-client rates)."""
    cmd = [str(CLIENT / "amqp_send"), "-p", str(broker.port), "-a", address, "-c", str(count),
           "-s", "1024"] + (["-d"] if durable else []) + (["-w", str(window)] if window else [])
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(producers)]
    outs = [p.communicate(timeout=600) for p in procs]
    wall = time.perf_counter() - t0
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
        assert "acked=%d " % count in out, out
    return producers * count / wall, [int(RATE.search(out).group(1)) for out, _ in outs]


@needs_client
@pytest.mark.parametrize("producers,durable", [(1, True), (8, True), (1, False)],
                         ids=["1-durable", "8-durable", "1-transient-baseline"])
def test_durable_1k_throughput(benchmark, broker_factory, request, producers, durable):
    broker = broker_factory()
    disk_rate, disk_lat = disk_sync_rate(str(broker.data_dir), 2.0 if _enabled(request) else 0.2)
    total = 100_000 if _enabled(request) else 2_000
    rates = []
    rounds = []

    def run():
        address = "durable-%d" % len(rounds)
        rounds.append(address)
        _declare(broker, address, BIG)
        rates.append(_send(broker, address, producers, total // producers, durable=durable))

    benchmark.pedantic(run, rounds=3 if _enabled(request) else 1)
    best = max(rates)
    benchmark.extra_info.update(msgs_per_sec=round(best[0]), disk_4k_fdatasync_per_sec=round(disk_rate))
    what = "durable 1 KiB, %d producer(s), accepted after sync" % producers if durable else \
        "NON-durable 1 KiB (baseline, same queue), %d producer(s)" % producers
    print("\ncypid %s: %d msgs/s (best of %d; per client %s); this disk: 4 KiB append+fdatasync %d/s "
          "(%.2f ms)" % (what, best[0], len(rates), best[1], disk_rate, disk_lat * 1000))


@needs_client
def test_lone_synchronous_durable_send_latency(benchmark, broker_factory, request):
    broker = broker_factory()
    disk_rate, disk_lat = disk_sync_rate(str(broker.data_dir), 2.0 if _enabled(request) else 0.2)
    count = 2_000 if _enabled(request) else 100
    _declare(broker, "lone", BIG)
    rates = []
    benchmark.pedantic(lambda: rates.append(_send(broker, "lone", 1, count, window=1)[1][0]),
                       rounds=1)
    latency = 1.0 / max(rates)
    benchmark.extra_info.update(latency_ms=round(latency * 1000, 3), disk_fdatasync_ms=round(disk_lat * 1000, 3))
    print("\ncypid lone synchronous durable send (1 KiB, one in flight): %.2f ms per message "
          "(%d msgs/s); this disk: 4 KiB append+fdatasync %.2f ms" % (latency * 1000, max(rates), disk_lat * 1000))


def build_journal(data_dir, name, total_bytes, size=1024):
    """Write, with the journal API, the store of a broker with one durable queue ``name`` holding
    ``total_bytes`` of durable ``size``-byte messages, exactly as the broker would have written
    them. Returns the number of messages."""
    from cypid.broker.config_store import ConfigStore
    from cypid.broker.store import F_DURABLE, STORE_DIRNAME
    store = Path(data_dir) / STORE_DIRNAME
    pages = 256                                             # 16 MiB files
    count = max(3, -(-total_bytes * 11 // 10 // (pages * 65536)) + 2)
    config = ConfigStore(store)
    jdir = config.add_queue(name, {"durable": True, "qpid.file_count": count, "qpid.file_size": pages,
                                   "qpid.max_size": 0, "qpid.max_count": 0})
    config.close()
    body = encode(Described(ulong(0x75), b"\x5a" * (size - 16)))   # a data section
    n = total_bytes // len(body)
    with Journal(store / "jrnl" / jdir, count, pages, name=name) as j:
        for rid in range(1, n + 1):
            j.append_enqueue(rid, body, None, F_DURABLE | 4)
    return n


def test_recovery_of_1gib_journal(benchmark, broker_factory, request, tmp_path):
    size = (1 << 30) if _enabled(request) else (16 << 20)
    broker = broker_factory(start=False, start_timeout=600, stop_timeout=120)
    broker.data_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n = build_journal(broker.data_dir, "big", size)
    built = time.perf_counter() - t0
    subprocess.run(["sync"], check=False)
    times = []

    def run():
        t = time.perf_counter()
        broker.start()
        times.append(time.perf_counter() - t)
        broker.stop()

    benchmark.pedantic(run, rounds=1)
    m = re.findall(r"Recovered .* (\d+) messages in ([\d.]+) s", broker.log_text())
    assert m and int(m[-1][0]) == n, broker.log_text()[-2000:]
    benchmark.extra_info.update(messages=n, start_to_listening_s=round(times[0], 3),
                                store_recovery_s=float(m[-1][1]))
    print("\ncypid recovery of a %d MiB journal (%d messages of 1 KiB): start to listening %.2f s, "
          "store recovery %.2f s (%.0f msgs/s, %.0f MiB/s); journal written offline in %.1f s"
          % (size >> 20, n, times[0], float(m[-1][1]), n / float(m[-1][1]),
             (size >> 20) / float(m[-1][1]), built))
