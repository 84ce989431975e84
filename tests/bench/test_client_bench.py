"""cypid.client's publish rate: 1 KiB messages from one client process into the Proton-C neutral receiver
(build/neutral-client/amqp_recv in listen mode, `make neutral-client`), which does nothing with them.

`make bench` prints msgs/s as the receiver measured it (first to last message), pre-settled and unsettled
(every outcome awaited); under `make test` (benchmarks disabled) each case runs once on a small count.
"""
import re
import resource
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cypid.client import connect, encode_message, run

ROOT = Path(__file__).resolve().parents[2]
RECV = ROOT / "build" / "neutral-client" / "amqp_recv"
RATE = re.compile(r"rate=(\d+) msg/s")

pytestmark = pytest.mark.skipif(not RECV.exists(), reason="neutral client not built (make neutral-client)")


def _count(request):
    return 1_000_000 if request.config.getoption("benchmark_enable", False) else 20_000


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def publish(count, settled, size=1024):
    """Send ``count`` messages into a listening amqp_recv; (receiver's rate, client's own rate, client's
    rate per CPU second: count / (utime + stime) of this process over the sends, the figure other jobs
    on the machine disturb least)."""
    port = _free_port()
    receiver = subprocess.Popen([str(RECV), "-l", "-p", str(port), "-c", str(count)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening" in receiver.stderr.readline()

        async def main():
            conn = await connect("127.0.0.1:%d" % port, sasl=False)
            snd = await conn.sender("bench", settled=settled, window=20000)
            msg = encode_message(b"x" * size)
            start, cpu = time.perf_counter(), _cpu()
            await snd.send(msg, count)
            if not settled:
                await snd.wait_settled()
                assert snd.counts["accepted"] == count
            elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
            await conn.close(timeout=5)
            return count / elapsed, count / cpu

        own, per_cpu = run(main())
        out, err = receiver.communicate(timeout=120)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    assert receiver.returncode == 0, out + err
    assert "received=%d" % count in out, out
    return int(RATE.search(out).group(1)), own, per_cpu


def _cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("settled", [True, False], ids=["presettled", "unsettled"])
def test_client_publish_rate_into_neutral_receiver(benchmark, request, settled):
    count = _count(request)
    rates = []

    def once():
        rates.append(publish(count, settled))

    rounds = 3 if request.config.getoption("benchmark_enable", False) else 1
    benchmark.pedantic(once, rounds=rounds)
    best = max(rates)
    benchmark.extra_info["msgs_per_sec"] = best[0]
    per_cpu = max(r[2] for r in rates)
    benchmark.extra_info["msgs_per_cpu_sec"] = per_cpu
    print("\ncypid.client publish, 1 KiB, %s, into amqp_recv: %d msgs/s (client's clock: %.0f; client's CPU: "
          "%.0f msgs per CPU second; best of %d)"
          % ("pre-settled" if settled else "unsettled", best[0], best[1], per_cpu, len(rates)))
