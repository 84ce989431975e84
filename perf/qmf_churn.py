"""QMF churn: create and then delete many queues through the broker's QMF methods, as qpid-config does.

    python -m cypid.perf.qmf_churn [--count 10000] [-b HOST:PORT] [--qpidd PATH] [--durable]

Without ``-b`` it starts a cypid broker (``qpidd --port 0`` on a temporary data directory, or the
program ``--qpidd`` names, e.g. a stock qpidd with its modules in ``--qpidd-args``) and stops it at
the end. It sends ``create`` (type queue) for ``--count`` queues, one request at a time as
qpid-config's ``add queue`` does, then ``delete`` for each, through the tools' QMF console
(cypid.tools.qmf), and prints each phase's wall time, rate, and the slowest single call of the
first and last thousand (a management call should cost the same with 10 queues as with 10,000).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from cypid.tools import qmf

LISTENING = re.compile(r"Listening on TCP(?:/TCP6)? port (\d+)")


def start_broker(command: list[str], data_dir: str, log_path: str) -> tuple[subprocess.Popen, int]:
    cmd = command + ["--port", "0", "--interface", "127.0.0.1", "--data-dir", data_dir]
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(log_path, "rb") as f:
            m = LISTENING.search(f.read().decode("utf-8", "replace"))
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("broker did not start; log in %s" % log_path)


def timed_calls(agent: qmf.BrokerAgent, method: str, names: list[str], properties: dict) -> list[float]:
    out = []
    for name in names:
        start = time.perf_counter()
        if method == "create":
            agent.create("queue", name, properties)
        else:
            agent.delete("queue", name, {"if_empty": True, "if_unused": True})
        out.append(time.perf_counter() - start)
    return out


def report(phase: str, times: list[float]) -> str:
    total = sum(times)
    head, tail = times[:1000], times[-1000:]
    return ("%-7s %6d queues in %7.2f s: %7.0f /s; slowest call of the first 1000 %.1f ms, of the "
            "last 1000 %.1f ms; median %.2f ms" % (
                phase, len(times), total, len(times) / total if total else 0, max(head) * 1000,
                max(tail) * 1000, sorted(times)[len(times) // 2] * 1000))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cypid.perf.qmf_churn", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("-b", "--broker", help="a running broker (HOST:PORT); default: start one")
    parser.add_argument("--qpidd", default=None, help="the broker program to start (default: cypid)")
    parser.add_argument("--qpidd-args", default="", help="extra arguments for it (one shell string)")
    parser.add_argument("--durable", action="store_true", help="durable queues")
    args = parser.parse_args(argv)
    proc = tmp = None
    url = args.broker
    if url is None:
        tmp = tempfile.mkdtemp(prefix="qmf-churn-")
        command = [args.qpidd] if args.qpidd else [sys.executable, "-m", "cypid.broker.main"]
        command += shlex.split(args.qpidd_args)
        proc, port = start_broker(command, os.path.join(tmp, "data"), os.path.join(tmp, "broker.log"))
        url = "127.0.0.1:%d" % port
    try:
        agent = qmf.BrokerAgent.open(url, timeout=60)
        names = ["churn-%05d" % i for i in range(args.count)]
        props = {"durable": True} if args.durable else {}
        created = timed_calls(agent, "create", names, props)
        print(report("create", created))
        deleted = timed_calls(agent, "delete", names, {})
        print(report("delete", deleted))
        agent.close()
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
