"""The tools on cypid and on a stock qpidd side by side: the seed's qpid-config, qpid-stat, qpid-tool and
qpid-printevents commands give the same layout (titles, column headers, separators) on both, and the
names of what the test made, spelled right. Skipped when no stock qpidd runs here (see conftest)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from proton import Message
from proton.utils import BlockingConnection

from tests.conftest import fail_on_leaks
from tests.integration.test_tools import Reader
from tests.support.broker import BrokerFactory
from tests.support.stock_qpidd import comparison_or_skip as qpidd_or_skip
from tests.tools.conftest import cypid_command

BIN = Path(sys.prefix) / "bin"
QUEUES = ["parity-orders", "parity-invoices", "parity-durable"]
EXCHANGE = "parity-fan"


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """cypid and the stock qpidd, each set up the same way, for the whole module."""
    qpidd_command = qpidd_or_skip()
    factories = [BrokerFactory(tmp_path_factory.mktemp("cypid"), command=cypid_command()),
                 BrokerFactory(tmp_path_factory.mktemp("qpidd"), command=qpidd_command)]
    try:
        brokers = tuple(factory() for factory in factories)
        for broker in brokers:
            setup(broker)
        yield brokers
    finally:
        for factory in factories:
            factory.close()
        fail_on_leaks(factories[0].leaks())


def tool(name: str, broker, *args: str, input: str | None = None) -> str:
    result = subprocess.run([str(BIN / name)] + (["-b", broker.url] if name != "qpid-tool" else [broker.url])
                            + list(args), capture_output=True, text=True, timeout=120, input=input)
    assert result.returncode == 0, "%s %s on %s: %s" % (name, args, broker, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def setup(broker) -> None:
    tool("qpid-config", broker, "add", "queue", QUEUES[0])
    tool("qpid-config", broker, "add", "queue", QUEUES[1], "--max-queue-count", "100")
    tool("qpid-config", broker, "add", "queue", QUEUES[2], "--durable")
    tool("qpid-config", broker, "add", "exchange", "fanout", EXCHANGE)
    tool("qpid-config", broker, "bind", EXCHANGE, QUEUES[0])
    conn = BlockingConnection(broker.url, timeout=60)
    try:
        sender = conn.create_sender(QUEUES[0])
        for i in range(3):
            sender.send(Message(body="m%d" % i))
    finally:
        conn.close()


def layout(out: str) -> list[str]:
    """What a reader sees as the output's shape: titles and other lines outside tables (numbers
    replaced by N), each table's column headers (the line above a ==== line) and separator; a
    table's rows (up to the next blank line) are left out, so row order and values do not count."""
    shape: list[str] = []
    in_rows = False
    for line in out.splitlines():
        if re.match(r"^\s*=+$", line):
            header = shape.pop() if shape else ""
            shape.append("HEADERS " + " ".join(re.split(r"\s{2,}", header.split(" ", 1)[-1].strip())))
            shape.append("SEPARATOR")
            in_rows = True
        elif not line.strip():
            in_rows = False
            shape.append("BLANK")
        elif not in_rows:
            shape.append("LINE " + re.sub(r"\d[\d,]*", "N", line.strip()))
    return shape


SEED_COMMANDS = [
    ("qpid-config", ()),
    ("qpid-config", ("queues",)),
    ("qpid-config", ("queues", "parity")),
    ("qpid-config", ("exchanges",)),
    ("qpid-config", ("-r", "queues", "parity")),
    ("qpid-config", ("exchanges", "-r", EXCHANGE)),
    ("qpid-stat", ("-g",)),
    ("qpid-stat", ("-q",)),
    ("qpid-stat", ("-q", QUEUES[0])),
    ("qpid-stat", ("-e",)),
    ("qpid-stat", ("-c",)),
    ("qpid-stat", ("-m",)),
]


@pytest.mark.parametrize("name,args", SEED_COMMANDS, ids=[" ".join((n,) + a) for n, a in SEED_COMMANDS])
def test_same_layout_and_names(both, name, args):
    outputs = [tool(name, broker, *args) for broker in both]
    assert_same_layout(*outputs)
    if name == "qpid-config" and args[-1:] == ("parity",):
        for out in outputs:
            assert all(re.search(r"^(\s*|Queue ')%s\b" % q, out, re.M) for q in QUEUES), out
    if args == ("-q",):
        for out in outputs:
            rows = {line.split()[0]: line.split() for line in out.splitlines()[3:]}
            assert set(QUEUES) <= set(rows), out
            assert rows[QUEUES[0]][1:3] == ["3", "3"] or "3" in rows[QUEUES[0]], out


def test_qpid_tool_session(both):
    script = "list\nlist queue\nschema queue\nquit\n"
    outputs = [tool("qpid-tool", broker, input=script) for broker in both]
    for out in outputs:
        listed = out.split("Object Summary:", 1)[1] if "Object Summary:" in out else out
        for q in QUEUES:
            assert re.search(r"org\.apache\.qpid\.broker:queue:%s$" % q, listed, re.M) or q in listed, out
    assert_same_layout(*outputs)


def assert_same_layout(cypid_out: str, qpidd_out: str) -> None:
    """The same titles, headers and separators in the same order; lines outside tables (one per
    object in some listings, in the broker's order) the same as a set."""
    shapes = layout(cypid_out), layout(qpidd_out)
    structure = [[x for x in shape if not x.startswith("LINE")] for shape in shapes]
    assert structure[0] == structure[1] and sorted(shapes[0]) == sorted(shapes[1]), \
        "cypid:\n%s\nqpidd:\n%s" % (cypid_out, qpidd_out)


def test_qpid_printevents(both):
    lines = []
    for broker in both:
        proc = subprocess.Popen([str(BIN / "qpid-printevents"), broker.url], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        reader = Reader(proc)
        try:
            reader.wait_for(r"brokerConnected")
            tool("qpid-config", broker, "add", "queue", "parity-event")
            m = reader.wait_for(r"^.* org\.apache\.qpid\.broker:queueDeclare .*qName=parity-event .*$")
            lines.append(m.group(0))
        finally:
            proc.terminate()
            proc.wait(30)
    keys = [re.findall(r" (\w+)=", line) for line in lines]
    assert keys[0] == keys[1], lines
    assert all("qName=parity-event " in line for line in lines), lines
