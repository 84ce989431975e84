"""Whole-broker throughput: 1 KiB messages through one queue, one sender, one receiver, at-least-once,
measured with the Proton-C neutral client (../shared/tools/neutral-client, built by `make neutral-client`).

`make bench` prints msgs/s for cypid and, in the same run, the client's own peer-to-peer ceiling. Under
`make test` (benchmarks disabled) each case runs once on a small count, as a smoke test.

The durable case: durable 1 KiB messages (amqp_send -d) through a durable queue of a broker with a data
dir (the broker fixture has one), each settled once its journal record is synced; it measures the
client's peer-to-peer rate in the same test and reports both and their ratio.
"""
import re
import socket
import subprocess
from pathlib import Path

import pytest
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "build" / "neutral-client"
RATE = re.compile(r"rate=(\d+) msg/s")

pytestmark = pytest.mark.skipif(not (CLIENT / "amqp_send").exists(),
                                reason="neutral client not built (make neutral-client)")


def _count(request):
    return 200_000 if request.config.getoption("benchmark_enable", False) else 5_000


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_pair(port, address, count, listen=False, durable=False):
    recv_cmd = [str(CLIENT / "amqp_recv"), "-p", str(port), "-a", address, "-c", str(count), "-C", "1000"]
    if listen:
        recv_cmd.append("-l")
    receiver = subprocess.Popen(recv_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if listen:
        # The listening receiver says so on stderr once it accepts connections.
        assert "listening" in receiver.stderr.readline()
    send_cmd = [str(CLIENT / "amqp_send"), "-p", str(port), "-a", address, "-c", str(count), "-s", "1024"]
    if durable:
        send_cmd.append("-d")
    sender = subprocess.run(send_cmd, capture_output=True, text=True, timeout=300)
    out, err = receiver.communicate(timeout=300)
    assert sender.returncode == 0, sender.stdout + sender.stderr
    assert receiver.returncode == 0, out + err
    assert "received=%d" % count in out, out
    return int(RATE.search(out).group(1))


def test_one_queue_1k_messages(benchmark, broker, request):
    conn = BlockingConnection(broker.url)
    conn.create_sender("bench", options=CreateQueue())
    conn.close()
    count = _count(request)
    rates = []

    def run():
        rates.append(_run_pair(broker.port, "bench", count))

    benchmark.pedantic(run, rounds=3 if request.config.getoption("benchmark_enable", False) else 1)
    benchmark.extra_info["msgs_per_sec"] = max(rates)
    print("\ncypid one queue, 1 KiB, 1 sender 1 receiver: %s msgs/s (best of %d)" % (max(rates), len(rates)))


def test_neutral_client_peer_to_peer_ceiling(benchmark, request):
    count = _count(request) * 3
    rates = []

    def run():
        rates.append(_run_pair(_free_port(), "p2p", count, listen=True))

    benchmark.pedantic(run, rounds=1)
    benchmark.extra_info["msgs_per_sec"] = max(rates)
    print("\nneutral client peer to peer, 1 KiB: %s msgs/s" % max(rates))


def test_durable_queue_1k_messages(benchmark, broker, request):
    assert broker.use_data_dir      # durable messages reach the journal
    conn = BlockingConnection(broker.url)
    conn.create_sender("bench-durable", options=CreateQueue({"durable": True}))
    conn.close()
    full = request.config.getoption("benchmark_enable", False)
    count = _count(request) // 4 if full else 2_000
    rates = []

    def run():
        rates.append(_run_pair(broker.port, "bench-durable", count, durable=True))

    benchmark.pedantic(run, rounds=3 if full else 1)
    ceiling = _run_pair(_free_port(), "p2p", count * 3, listen=True, durable=True)
    benchmark.extra_info["msgs_per_sec"] = max(rates)
    benchmark.extra_info["peer_to_peer_msgs_per_sec"] = ceiling
    print("\ncypid durable queue, durable 1 KiB, 1 sender 1 receiver: %s msgs/s (best of %d); "
          "neutral client peer to peer in the same run: %s msgs/s (ratio %.3f)"
          % (max(rates), len(rates), ceiling, max(rates) / ceiling))
