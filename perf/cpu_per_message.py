"""Broker CPU per message, A B A B: ``python -m cypid.perf.cpu_per_message NAME=COMMAND ...``.

Each broker command is started on a free port with its own data dir; a queue ``q`` without limits
is made with qpid-config; the neutral Proton-C client (../shared/tools/neutral-client, built by
``make neutral-client``) sends ``--count`` 1 KiB messages through it to its receiver; the broker's
utime+stime over the run divided by the messages is printed beside the receiver's rate. Brokers
take turns, transient then durable, ``--rounds`` times, so that a change of machine load hits both.
"""
import argparse
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def _cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(command, args, durable):
    """(receiver msgs/s, broker CPU us per message) of one run."""
    data_dir = tempfile.mkdtemp(prefix="cpu-per-message-")
    port = _free_port()
    broker = subprocess.Popen(command + ["--port", str(port), "--interface", "127.0.0.1", "--data-dir", data_dir,
                                         "--auth", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([args.qpid_config, "-b", f"127.0.0.1:{port}", "add", "queue", "q",
                              "--max-queue-size", "0", "--max-queue-count", "0"] + (["--durable"] if durable else []),
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline or broker.poll() is not None:
                raise RuntimeError("broker %s did not take the queue" % command)
            time.sleep(0.1)  # poll: the broker is still starting
        start = _cpu_ticks(broker.pid)
        recv = subprocess.Popen([os.path.join(args.neutral, "amqp_recv"), "-p", str(port), "-a", "q",
                                 "-c", str(args.count), "-C", "1000"], stdout=subprocess.PIPE, text=True)
        subprocess.run([os.path.join(args.neutral, "amqp_send"), "-p", str(port), "-a", "q", "-c", str(args.count),
                        "-s", "1024"] + (["-d"] if durable else []), capture_output=True, check=True)
        out = recv.communicate(timeout=600)[0]
        used = (_cpu_ticks(broker.pid) - start) / os.sysconf("SC_CLK_TCK")
    finally:
        broker.kill()
        broker.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
    rate = re.search(r"rate=([\d.]+)", out)
    return (float(rate.group(1)) if rate else 0.0), used / args.count * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("brokers", nargs="+", metavar="NAME=COMMAND")
    parser.add_argument("--count", type=int, default=200000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--neutral", default="build/neutral-client")
    parser.add_argument("--kinds", default="transient,durable",
                        help="which runs, comma-separated: transient, durable (default both)")
    parser.add_argument("--qpid-config", default=os.path.join(os.path.dirname(sys.executable), "qpid-config"))
    args = parser.parse_args(argv)
    brokers = [(name, shlex.split(cmd)) for name, cmd in (b.split("=", 1) for b in args.brokers)]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for kind in kinds:
        if kind not in ("transient", "durable"):
            parser.error("unknown kind %r (transient, durable)" % kind)
    for durable in [kind == "durable" for kind in kinds]:
        for _ in range(args.rounds):
            for name, command in brokers:
                rate, cpu = measure(command, args, durable)
                print("%-10s %-9s %8.0f msgs/s  broker CPU %5.2f us/msg"
                      % (name, "durable" if durable else "transient", rate, cpu), flush=True)


if __name__ == "__main__":
    main()
