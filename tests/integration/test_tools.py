"""The qpid tools (qpid-config, qpid-stat, qpid-tool, qpid-printevents) against a real cypid broker.

Each tool runs as a subprocess (the installed console script, else ``python -m cypid.tools.X``);
the seed's sessions are reproduced, queue options are checked as the behaviour a proton client
sees, and bad input must give qpidd's message, a non-zero exit and no change.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from proton import Message
from proton import Timeout
from proton.utils import BlockingConnection, SendException

from tests.support.blocking import take_all
from tests.support.broker import wait_until

TOOLS = {"qpid-config": "config", "qpid-stat": "stat", "qpid-tool": "tool", "qpid-printevents": "printevents"}

def command(name: str) -> list[str]:
    script = Path(sys.prefix) / "bin" / name
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "cypid.tools." + TOOLS[name]]


def run(name: str, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(command(name) + list(args), input=input, capture_output=True, text=True,
                          timeout=timeout)


def config(broker, *args, **kw):
    return run("qpid-config", "-b", broker.url, *args, **kw)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, "exit %d\nstdout:\n%s\nstderr:\n%s" % (
        result.returncode, result.stdout, result.stderr)
    return result.stdout


class Reader:
    """Collects a subprocess's stdout on a thread, so tests can wait for text."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.chunks: list[str] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            with self.lock:
                self.chunks.append(data.decode("utf-8", "replace"))

    @property
    def text(self) -> str:
        with self.lock:
            return "".join(self.chunks)

    def wait_for(self, pattern: str, timeout: float = 60, start: int = 0) -> re.Match:
        regex = re.compile(pattern, re.M)
        return wait_until(lambda: regex.search(self.text, start), timeout=timeout,
                          message=lambda: "%r in the output:\n%s" % (pattern, self.text[start:]))


def start(name: str, *args: str) -> tuple[subprocess.Popen, Reader]:
    proc = subprocess.Popen(command(name) + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    return proc, Reader(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def send(broker, address: str, bodies, **fields) -> None:
    conn = BlockingConnection(broker.url, timeout=30)
    try:
        sender = conn.create_sender(address)
        for body in bodies:
            sender.send(Message(body=body, **fields))
    finally:
        conn.close()


def receive_all(broker, queue: str, limit: int | None = None) -> list[Message]:
    """Every message the queue holds (at most ``limit``), accepted."""
    conn = BlockingConnection(broker.url, timeout=30)
    try:
        return take_all(conn, queue, limit)
    finally:
        conn.close()


def queue_line(out: str, name: str) -> str:
    for line in out.splitlines():
        if line.split(" ", 1)[0] == name:
            return line
    raise AssertionError("no line for %s in:\n%s" % (name, out))


OWN_REPLY = re.compile(r"^qpid-(config|stat|tool)\.[^ ]+_reply\b")


# -- qpid-config: the seed's sessions --------------------------------------------------------------------

SEED_QUEUES = ["pub_start", "pub_done", "sub_ready", "sub_done"]


def make_seed_queues(broker):
    for name in SEED_QUEUES:
        ok(config(broker, "add", "queue", name))
    ok(config(broker, "add", "queue", "perftest0", "--durable"))


def test_config_summary(broker):
    make_seed_queues(broker)
    out = ok(config(broker))
    lines = out.splitlines()
    assert lines[0] == "Total Exchanges: 8"
    types = dict(re.match(r"^ +(\w+): (\d+)$", line).groups() for line in lines[1:5])
    assert types == {"direct": "3", "topic": "3", "fanout": "1", "headers": "1"}
    assert all(re.match(r"^%15s: \d+$" % t, line) for t, line in zip(types, lines[1:5]))
    # five queues made here, and qpid-config's own reply queue (qpidd's tool shows its own too)
    assert lines[5:] == ["   Total Queues: 6", "        durable: 1", "    non-durable: 5"]


def test_config_queues_listing(broker):
    make_seed_queues(broker)
    out = ok(config(broker, "queues"))
    lines = out.splitlines()
    names = [line.split(" ", 1)[0] for line in lines[2:]]
    width = max(len(n) for n in names)
    assert lines[0] == "%-*s  Attributes" % (width, "Queue Name")
    assert lines[1] == "=" * (5 * (width // 5 + 5))
    assert names[:5] == SEED_QUEUES + ["perftest0"]
    assert lines[2:6] == SEED_QUEUES
    assert lines[6] == "%-*s  --durable" % (width, "perftest0")
    assert OWN_REPLY.match(lines[7]) and lines[7].endswith("  auto-del")
    # a filter
    out = ok(config(broker, "queues", "perf"))
    assert out.splitlines()[2:] == ["perftest0   --durable"]
    result = config(broker, "queues", "nothing-like-this")
    assert (result.returncode, result.stdout) == (1, "")


def test_config_bindings_listing(broker):
    make_seed_queues(broker)
    ok(config(broker, "bind", "amq.direct", "perftest0", "perftest0"))
    ok(config(broker, "bind", "amq.topic", "pub_start", "news.#"))
    ok(config(broker, "bind", "amq.match", "sub_done", "all", "colour=red"))
    expected_amq = ["Exchange 'amq.direct' (direct)",
                    "    bind perftest0 => perftest0",
                    "Exchange 'amq.topic' (topic)",
                    "    bind news.# => pub_start",
                    "Exchange 'amq.fanout' (fanout)",
                    "Exchange 'amq.match' (headers)",
                    "    bind  => sub_done {'colour': 'red', 'x-match': 'all'}"]
    for args in (["-r", "exchanges"], ["exchanges", "--bindings"]):
        out = ok(config(broker, *args)).splitlines()
        assert out[0] == "Exchange '' (direct)"
        assert out[1:6] == ["    bind %s => %s" % (q, q) for q in SEED_QUEUES + ["perftest0"]]
        start_ = out.index("Exchange 'amq.direct' (direct)")
        assert out[start_:start_ + len(expected_amq)] == expected_amq
    # the seed's older form: -a gives the broker, -b asks for bindings
    old = ok(run("qpid-config", "-a", broker.url, "-b", "exchanges")).splitlines()
    assert old[start_:start_ + len(expected_amq)] == expected_amq
    out = ok(config(broker, "-r", "queues", "perftest0"))
    assert out.splitlines() == ["Queue 'perftest0'", "    bind perftest0 => ''", "    bind perftest0 => amq.direct"]
    ok(config(broker, "unbind", "amq.direct", "perftest0", "perftest0"))
    out = ok(config(broker, "-r", "queues", "perftest0"))
    assert out.splitlines() == ["Queue 'perftest0'", "    bind perftest0 => ''"]


def test_config_list_and_log(broker):
    ok(config(broker, "add", "queue", "q1", "--durable"))
    out = ok(config(broker, "list", "queue")).splitlines()
    assert out[0] == "Objects of type 'queue'"
    assert out[1].split() == ["name", "durable", "autoDelete"]
    assert any(line.split() == ["q1", "True", "False"] for line in out[3:])
    assert re.match(r"^Log level: \S+", ok(config(broker, "log")))


# -- qpid-config: each queue option as a client sees it ----------------------------------------------------

def test_ring_queue_drops_its_oldest(broker):
    ok(config(broker, "add", "queue", "ring", "--max-queue-count", "3", "--limit-policy", "ring"))
    send(broker, "ring", ["m%d" % i for i in range(1, 6)])
    assert [m.body for m in receive_all(broker, "ring")] == ["m3", "m4", "m5"]


def test_ring_strict_queue_drops_its_oldest_unacquired(broker):
    ok(config(broker, "add", "queue", "rs", "--max-queue-count", "2", "--limit-policy", "ring-strict"))
    send(broker, "rs", ["a", "b", "c"])
    assert [m.body for m in receive_all(broker, "rs")] == ["b", "c"]


def test_reject_queue_refuses_past_its_count(broker):
    ok(config(broker, "add", "queue", "rej", "--max-queue-count", "2", "--limit-policy", "reject"))
    send(broker, "rej", ["a", "b"])
    with pytest.raises(SendException):
        send(broker, "rej", ["c"])
    assert [m.body for m in receive_all(broker, "rej")] == ["a", "b"]


def test_max_queue_size_in_bytes(broker):
    ok(config(broker, "add", "queue", "small", "--max-queue-size", "3000", "--limit-policy", "reject"))
    with pytest.raises(SendException):
        send(broker, "small", ["x" * 1024] * 5)
    assert 1 <= len(receive_all(broker, "small")) < 5


def test_lvq_key_keeps_the_last_value_per_key(broker):
    ok(config(broker, "add", "queue", "lvq", "--lvq-key", "sym"))
    conn = BlockingConnection(broker.url, timeout=30)
    try:
        sender = conn.create_sender("lvq")
        for sym, price in (("A", 1), ("B", 2), ("A", 3), ("B", 4), ("C", 5)):
            sender.send(Message(body=price, properties={"sym": sym}))
    finally:
        conn.close()
    assert sorted(m.body for m in receive_all(broker, "lvq")) == [3, 4, 5]


def test_group_header_keeps_a_group_with_one_consumer(broker):
    ok(config(broker, "add", "queue", "grp", "--group-header", "g", "--shared-groups"))
    conn = BlockingConnection(broker.url, timeout=30)
    try:
        sender = conn.create_sender("grp")
        for i, g in enumerate("AABBAB"):
            sender.send(Message(body="%s%d" % (g, i), properties={"g": g}))
        first = conn.create_receiver("grp", credit=1, name="first")
        m = first.receive(timeout=10)  # group A is now owned by `first` (not accepted)
        assert m.properties["g"] == "A"
        second = conn.create_receiver("grp", credit=10, name="second")
        got = [second.receive(timeout=10) for _ in range(3)]   # B2, B3, B5: A1 and A4 stay with `first`
        assert [x.body for x in got] == ["B2", "B3", "B5"]
        with pytest.raises(Timeout):
            second.receive(timeout=0.5)
    finally:
        conn.close()


def test_flow_stop_and_resume_count(broker):
    """Past --flow-stop-count the broker holds the producer's transfers (qpidd: flow stops when the
    count exceeds the threshold) until the depth drops to --flow-resume-count."""
    ok(config(broker, "add", "queue", "flow", "--flow-stop-count", "5", "--flow-resume-count", "2"))

    def flow_row():
        out = ok(run("qpid-stat", "-b", broker.url, "-q", "flow"))
        return re.search(r"^  flow +\S+ +\S+ +\S+ +(Y|N) +(\d+) ", out, re.M).groups()

    conn = BlockingConnection(broker.url, timeout=30)
    try:
        sender = conn.create_sender("flow")
        for i in range(5):
            sender.send(Message(body=i), timeout=10)
        assert flow_row() == ("N", "0")
        with pytest.raises(Timeout):
            sender.send(Message(body="held"), timeout=2)
        assert flow_row() == ("Y", "1")
        assert len(receive_all(broker, "flow", limit=5)) == 5  # depth 6 -> 1, below the resume count
        wait_until(lambda: flow_row()[0] == "N", timeout=30, message="flow to resume")
    finally:
        conn.close()


def test_flow_to_disk_policy_keeps_every_message(broker):
    ok(config(broker, "add", "queue", "ftd", "--durable", "--max-queue-count", "2",
              "--limit-policy", "flow-to-disk"))
    send(broker, "ftd", ["m%d" % i for i in range(6)], durable=True)
    assert [m.body for m in receive_all(broker, "ftd")] == ["m%d" % i for i in range(6)]


def test_argument_name_value_reaches_the_queue(broker):
    ok(config(broker, "add", "queue", "argq", "--argument", "x-custom=7", "--argument", "x-text=hello"))
    line = queue_line(ok(config(broker, "queues", "argq")), "argq")
    assert "--argument x-custom=7" in line and "--argument x-text=hello" in line


def test_options_are_listed_back(broker):
    ok(config(broker, "add", "queue", "every", "--durable", "--file-count", "4", "--file-size", "16",
              "--max-queue-size", "100000", "--max-queue-count", "100", "--limit-policy", "ring",
              "--lvq-key", "k", "--generate-queue-events", "1", "--flow-stop-size", "90000",
              "--flow-resume-size", "50000", "--flow-stop-count", "90", "--flow-resume-count", "50",
              "--alternate-exchange", "amq.fanout"))
    ok(config(broker, "add", "queue", "groups", "--group-header", "grp", "--shared-groups"))
    out = ok(config(broker, "queues"))
    line = queue_line(out, "every")
    for attr in ("--durable", "--file-count=4", "--file-size=16", "--max-queue-size=100000",
                 "--max-queue-count=100", "--limit-policy=ring", "--lvq-key=k", "--alternate-exchange=amq.fanout",
                 "--flow-stop-size=90000", "--flow-resume-size=50000", "--flow-stop-count=90",
                 "--flow-resume-count=50", "--generate-queue-events=1"):
        assert attr in line, (attr, line)
    line = queue_line(out, "groups")
    assert "--group-header=grp --shared-groups" in line


def test_conflicting_options_are_refused(broker):
    """cypid refuses what qpidd would take and misbehave on: groups on a last-value queue."""
    result = config(broker, "add", "queue", "both", "--lvq-key", "k", "--group-header", "g")
    assert result.returncode == 1
    assert "message groups cannot be used with a last-value queue" in result.stderr
    assert "both " not in ok(config(broker, "queues"))


def test_durable_queue_and_message_survive_a_restart(broker):
    ok(config(broker, "add", "queue", "dq", "--durable", "--file-count", "4", "--file-size", "16"))
    send(broker, "dq", ["kept"], durable=True)
    broker.restart()
    line = queue_line(ok(config(broker, "queues", "dq")), "dq")
    assert "--durable" in line
    assert [m.body for m in receive_all(broker, "dq")] == ["kept"]


def test_alternate_exchange_gets_rejected_messages(broker):
    ok(config(broker, "add", "queue", "dead"))
    ok(config(broker, "bind", "amq.fanout", "dead"))
    ok(config(broker, "add", "queue", "work", "--alternate-exchange", "amq.fanout"))
    send(broker, "work", ["poison"])
    conn = BlockingConnection(broker.url, timeout=30)
    try:
        receiver = conn.create_receiver("work", credit=1)
        assert receiver.receive(timeout=10).body == "poison"
        receiver.reject()
    finally:
        conn.close()
    assert [m.body for m in receive_all(broker, "dead")] == ["poison"]


def test_exchange_sequence_numbers_messages(broker):
    ok(config(broker, "add", "exchange", "fanout", "seqx", "--sequence"))
    ok(config(broker, "add", "queue", "seqq"))
    ok(config(broker, "bind", "seqx", "seqq"))
    send(broker, "seqx", ["a", "b", "c"])
    got = receive_all(broker, "seqq")
    seqs = []
    for m in got:
        found = [v for k, v in (m.annotations or {}).items() if "msg_sequence" in str(k)] + \
                [v for k, v in (m.properties or {}).items() if "msg_sequence" in str(k)]
        seqs.append(int(found[0]) if found else None)
    assert [m.body for m in got] == ["a", "b", "c"]
    assert seqs == [1, 2, 3]


def test_exchange_ive_gives_the_last_message_to_a_new_binding(broker):
    ok(config(broker, "add", "exchange", "fanout", "ivex", "--ive"))
    send(broker, "ivex", ["first", "last"])
    ok(config(broker, "add", "queue", "late"))
    ok(config(broker, "bind", "ivex", "late"))
    assert [m.body for m in receive_all(broker, "late")] == ["last"]


def test_headers_binding_from_the_command_line(broker):
    ok(config(broker, "add", "queue", "reds"))
    ok(config(broker, "bind", "amq.match", "reds", "all", "colour=red", "size=10"))
    conn = BlockingConnection(broker.url, timeout=30)
    try:
        sender = conn.create_sender("amq.match")
        sender.send(Message(body="yes", properties={"colour": "red", "size": 10}))
        sender.send(Message(body="no", properties={"colour": "blue", "size": 10}))
        sender.send(Message(body="half", properties={"colour": "red"}))
    finally:
        conn.close()
    assert [m.body for m in receive_all(broker, "reds")] == ["yes"]


def test_direct_and_topic_bindings_route(broker):
    ok(config(broker, "add", "queue", "dq1"))
    ok(config(broker, "add", "exchange", "topic", "news"))
    ok(config(broker, "bind", "news", "dq1", "sport.#"))
    send(broker, "news", ["match"], subject="sport.tennis")
    send(broker, "news", ["rain"], subject="weather")
    assert [m.body for m in receive_all(broker, "dq1")] == ["match"]


# -- qpid-config: bad input -----------------------------------------------------------------------------------

def queues_but_own(broker) -> list[str]:
    """`qpid-config queues` lines, without the tool's own reply queue (its name has the pid)."""
    return [line for line in ok(config(broker, "queues")).splitlines() if not OWN_REPLY.match(line)]


def test_unknown_option_and_policy_change_nothing(broker):
    ok(config(broker, "add", "queue", "before"))
    before = queues_but_own(broker)
    for args, text in ((["add", "queue", "bad", "--bogus"], "unrecognized arguments: --bogus"),
                       (["add", "queue", "bad", "--limit-policy", "sometimes"], "invalid choice: 'sometimes'")):
        result = config(broker, *args)
        assert result.returncode != 0
        assert text in result.stderr
    assert queues_but_own(broker) == before


def test_existing_queue_readded_with_other_options(broker):
    ok(config(broker, "add", "queue", "q", "--max-queue-count", "5"))
    before = queue_line(ok(config(broker, "queues", "q")), "q")
    result = config(broker, "add", "queue", "q", "--max-queue-count", "9", "--durable")
    assert result.returncode == 1
    assert result.stderr == ("Failed: Exception: Exception from Agent: {'error_code': 7, "
                             "'error_text': 'object already exists: q'}\n")
    assert queue_line(ok(config(broker, "queues", "q")), "q") == before


def test_delete_missing_queue_and_exchange(broker):
    result = config(broker, "del", "queue", "nope")
    assert result.returncode == 1 and "No such queue: nope" in result.stderr
    result = config(broker, "del", "exchange", "nope")
    assert result.returncode == 1 and "No such exchange: nope" in result.stderr
    result = config(broker, "del", "exchange", "amq.direct")
    assert result.returncode == 1 and result.stderr.startswith("Failed: Exception: Exception from Agent")


def test_delete_non_empty_queue_needs_force(broker):
    ok(config(broker, "add", "queue", "full"))
    send(broker, "full", ["a", "b"])
    result = config(broker, "del", "queue", "full")
    assert result.returncode == 1
    assert "Cannot delete queue full; queue not empty" in result.stderr
    assert queue_line(ok(config(broker, "queues", "full")), "full")
    assert len(receive_all(broker, "full", limit=1)) == 1  # still there, messages too (one taken)
    ok(config(broker, "del", "queue", "full", "--force"))
    assert config(broker, "queues", "full").stdout == ""


def test_delete_queue_in_use_needs_force_if_used(broker):
    ok(config(broker, "add", "queue", "busy"))
    conn = BlockingConnection(broker.url, timeout=30)
    try:
        conn.create_receiver("busy", credit=1)
        result = config(broker, "del", "queue", "busy")
        assert result.returncode == 1 and "queue in use" in result.stderr
        ok(config(broker, "del", "queue", "busy", "--force-if-used"))
    finally:
        try:
            conn.close()
        except Exception:
            pass


def test_bad_headers_binding_changes_nothing(broker):
    ok(config(broker, "add", "queue", "hq"))
    result = config(broker, "bind", "amq.match", "hq", "some", "colour=red")
    assert result.returncode == 1
    assert "need 'any' or 'all'" in result.stderr
    assert ok(config(broker, "-r", "queues", "hq")).splitlines() == ["Queue 'hq'", "    bind hq => ''"]


def test_unreachable_broker(broker):
    url = broker.url
    broker.stop()
    for tool, args in (("qpid-config", ["-b", url, "queues"]), ("qpid-stat", ["-b", url, "-q"]),
                       ("qpid-tool", [url])):
        result = run(tool, *args, input="list\n")
        assert result.returncode == 1, (tool, result)
        assert "cannot connect to %s" % url in result.stderr, (tool, result.stderr)


# -- qpid-stat --------------------------------------------------------------------------------------------------

def test_stat_queues(broker):
    ok(config(broker, "add", "queue", "busyq", "--durable"))
    ok(config(broker, "add", "queue", "idleq"))
    send(broker, "busyq", [b"x" * 1024] * 20)
    out = ok(run("qpid-stat", "-b", broker.url, "-q")).splitlines()
    assert out[0] == "Queues"
    heads = out[1].split()
    assert heads == ["queue", "dur", "autoDel", "excl", "msg", "msgIn", "msgOut", "bytes", "bytesIn",
                     "bytesOut", "cons", "bind"]
    assert set(out[2].strip()) == {"="}
    row = next(line for line in out if line.startswith("  busyq "))
    cells = row.split()
    assert cells[:4] == ["busyq", "Y", "20", "20"]
    assert cells[-2:] == ["0", "1"]
    # sorting: by msg, decreasing, limited to one row
    out = ok(run("qpid-stat", "-b", broker.url, "-q", "-S", "msg", "-L", "1")).splitlines()
    assert len(out) == 4 and out[3].startswith("  busyq ")
    out = ok(run("qpid-stat", "-b", broker.url, "-q", "-S", "queue", "-I")).splitlines()
    names = [line.split()[0] for line in out[3:]]
    assert names == sorted(names)


def test_stat_one_queue_and_general(broker):
    ok(config(broker, "add", "queue", "one", "--max-queue-count", "100"))
    send(broker, "one", ["a"] * 3)
    out = ok(run("qpid-stat", "-b", broker.url, "-q", "one"))
    assert out.startswith("Properties:\n  Name  Durable  AutoDelete  Exclusive  FlowStopped")
    assert "\n\nOptional Properties:\n" in out and "\n\nStatistics:\n" in out
    assert re.search(r"^  queue-depth +3 ", out, re.M)
    assert re.search(r"^  arguments +\{.*'qpid.max_count': 100", out, re.M)
    result = run("qpid-stat", "-b", broker.url, "-q", "missing")
    assert result.stdout == "Queue 'missing' not found\n"
    out = ok(run("qpid-stat", "-b", broker.url, "-g"))
    assert out.startswith("Broker Summary:\n  uptime  ")
    assert "Aggregate Broker Statistics:" in out
    assert re.search(r"^  total-enqueues +\d", out, re.M)


def test_stat_exchanges_connections(broker):
    out = ok(run("qpid-stat", "-b", broker.url, "-e")).splitlines()
    assert out[0] == "Exchanges"
    assert out[1].split() == ["exchange", "type", "dur", "bind", "msgIn", "msgOut", "msgDrop", "byteIn",
                              "byteOut", "byteDrop"]
    assert any(line.split()[:2] == ["amq.direct", "direct"] for line in out[3:])
    out = ok(run("qpid-stat", "-b", broker.url, "-c")).splitlines()
    assert out[0] == "Connections"
    assert out[1].split() == ["connection", "cproc", "cpid", "mech", "auth", "connected", "idle", "msgIn",
                              "msgOut"]
    assert any(" qpid-stat " in line for line in out[3:])


def test_stat_usage_errors():
    result = run("qpid-stat")
    assert result.returncode == 2
    assert "You must specify one of these options: -g, -c, -e, -q, -m, or -u." in result.stderr
    result = run("qpid-stat", "-q", "-S", "nosuchcol")
    assert result.returncode == 2 and "sortCol 'nosuchcol', not found in headers" in result.stderr


# -- qpid-tool ----------------------------------------------------------------------------------------------------

def test_tool_session(broker):
    """The seed's qpid-tool session: list, list queue, list <id> of a queue that carried 500
    messages of 1024 bytes, schema queue, call <id> purge; commands come on stdin (not a tty)."""
    ok(config(broker, "add", "queue", "perftest0"))
    send(broker, "perftest0", [b"x" * 1024] * 500)
    proc, out = start("qpid-tool", broker.url)
    try:
        out.wait_for(r"^Management Tool for QPID\n")

        def command_(text: str, until: str) -> str:
            mark = len(out.text)
            proc.stdin.write((text + "\n").encode())
            proc.stdin.flush()
            out.wait_for(until, start=mark)
            out.wait_for(r"qpid: $", start=mark + 1)
            return out.text[mark:]

        out.wait_for(r"qpid: $")
        text = command_("list", r"list\nManagement Object Types:\n")
        assert re.search(r"^    ObjectType +Active +Deleted\n    =+\n", text, re.M)
        assert re.search(r"^    org\.apache\.qpid\.broker:queue +\d+ +0$", text, re.M)
        assert re.search(r"^    org\.apache\.qpid\.broker:broker +1 +0$", text, re.M)

        text = command_("list queue", r"Objects of type org\.apache\.qpid\.broker:queue\n")
        assert re.search(r"^    ID +Created +Destroyed +Index\n    =+\n", text, re.M)
        m = re.search(r"^    (\d+) +\d\d:\d\d:\d\d +- +\d+\.perftest0$", text, re.M)
        assert m, text
        qid = m.group(1)

        text = command_("list " + qid, r"Object of type org\.apache\.qpid\.broker:queue: \(last sample time: ")
        assert re.search(r"^    Type +Element +%s\n    =+\n" % qid, text, re.M)
        assert re.search(r"^    config  name +perftest0$", text, re.M)
        assert re.search(r"^    config  durable +False$", text, re.M)
        assert re.search(r"^    inst    msgTotalEnqueues +500 messages$", text, re.M)
        assert re.search(r"^    inst    msgDepth +500$", text, re.M)
        m = re.search(r"^    inst    byteDepth +(\d+) octets$", text, re.M)  # first of the octet rows
        assert m and int(m.group(1)) >= 500 * 1024, text
        m = re.search(r"^    inst    byteTotalEnqueues +(\d+)$", text, re.M)
        assert m and int(m.group(1)) >= 500 * 1024

        text = command_("schema queue", r"Schema for class 'org\.apache\.qpid\.broker:queue':\n")
        assert re.search(r"^    Element +Type +Unit +Access +Notes +Description\n    =+\n", text, re.M)
        assert re.search(r"^    name +short-string +ReadCreate +index", text, re.M)
        assert re.search(r"^    msgTotalEnqueues +uint64 +message +Total messages enqueued$", text, re.M)
        assert "\nMethod 'purge' Discard all messages on queue\n" in text

        text = command_("call %s purge" % qid, r"OK \(0\) - \{\}\n")
        text = command_("list " + qid, r"Object of type org\.apache\.qpid\.broker:queue")
        assert re.search(r"^    inst    msgDepth +0$", text, re.M)
        assert re.search(r"^    inst    discardsPurge +500$", text, re.M)

        command_("set time-format long", r"set time-format long\n")
        text = command_("list queue", r"Objects of type")
        assert re.search(r"^    %s +\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4} +- +" % qid, text, re.M)

        proc.stdin.write(b"quit\n")
        proc.stdin.flush()
        assert proc.wait(30) == 0
        assert out.text.endswith("Exiting...\n")
    finally:
        stop(proc)
    assert receive_all(broker, "perftest0") == []


def test_tool_reconnects_after_a_broker_restart(broker):
    proc, out = start("qpid-tool", broker.url)
    try:
        out.wait_for(r"qpid: $")
        proc.stdin.write(b"list broker\n")
        proc.stdin.flush()
        out.wait_for(r"Objects of type org\.apache\.qpid\.broker:broker\n")
        mark = len(out.text)
        broker.restart()
        proc.stdin.write(b"list broker\n")
        proc.stdin.flush()
        out.wait_for(r"Broker disconnected: .*\nBroker connected: %s\n" % re.escape(broker.url), start=mark)
        out.wait_for(r"Objects of type org\.apache\.qpid\.broker:broker\n", start=mark)
    finally:
        stop(proc)


def test_tool_commands_from_a_pipe(broker):
    result = run("qpid-tool", broker.url, input="list broker\nschema\nbogus\n")
    assert result.returncode == 0
    assert "qpid: list broker\nObjects of type org.apache.qpid.broker:broker\n" in result.stdout
    assert "QMF Classes:" in result.stdout
    assert "Unknown command: bogus" in result.stdout
    assert result.stdout.endswith("qpid: quit\nExiting...\n")


# -- qpid-printevents -------------------------------------------------------------------------------------------

EVENT_LINE = r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} org\.apache\.qpid\.broker:"


def test_printevents_lines_as_things_happen(broker):
    proc, out = start("qpid-printevents", broker.url)
    try:
        out.wait_for(r"^.* NOTIC qpid-printevents:brokerConnected broker=%s$" % re.escape(broker.url))
        ok(config(broker, "add", "queue", "evq"))
        # the values in key order, as qpidd 1.40 sends them over AMQP 1.0 (a std::map)
        out.wait_for(EVENT_LINE + r"queueDeclare altEx= args=\{\} autoDel=False disp=created durable=False "
                                  r"excl=False qName=evq rhost=qpid\.\S+ user=\S+$")
        ok(config(broker, "bind", "amq.direct", "evq", "evkey"))
        out.wait_for(EVENT_LINE + r"bind args=\{\} exName=amq\.direct key=evkey qName=evq rhost=\S+ user=\S+$")
        conn = BlockingConnection(broker.url, timeout=30)
        conn.close()
        out.wait_for(EVENT_LINE + r"clientConnect properties=\{.*\} rhost=qpid\.127\.0\.0\.1:%d-127\.0\.0\.1:\d+ "
                                  r"user=\S+$" % broker.port)
        ok(config(broker, "del", "queue", "evq"))
        out.wait_for(EVENT_LINE + r"queueDelete qName=evq rhost=\S+ user=\S+$")
    finally:
        stop(proc)


def test_printevents_reconnects_after_a_restart_and_follows_two_brokers(broker_factory):
    b1, b2 = broker_factory(), broker_factory()
    proc, out = start("qpid-printevents", b1.url, b2.url)
    try:
        for b in (b1, b2):
            out.wait_for(r"NOTIC qpid-printevents:brokerConnected broker=%s$" % re.escape(b.url))
        ok(config(b2, "add", "queue", "on-b2"))
        out.wait_for(EVENT_LINE + r"queueDeclare .*\bqName=on-b2\b")
        mark = len(out.text)
        b1.restart()
        out.wait_for(r"NOTIC qpid-printevents:brokerDisconnected broker=%s$" % re.escape(b1.url), start=mark)
        out.wait_for(r"NOTIC qpid-printevents:brokerConnected broker=%s$" % re.escape(b1.url), start=mark)
        ok(config(b1, "add", "queue", "after-restart"))
        out.wait_for(EVENT_LINE + r"queueDeclare .*\bqName=after-restart\b", start=mark)
    finally:
        stop(proc)


def test_printevents_help():
    out = ok(run("qpid-printevents", "--help"))
    assert out.startswith("Usage: qpid-printevents [options] [broker-addr]...\n\nCollect and print events")
