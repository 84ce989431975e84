"""Two QMF consoles written for qpidd by others drive cypid (and the stock qpidd, when there is one):
qpid-bow's ``qb`` command and brokerlso's request messages. Both run from build/qmf-consoles (``make
qmf-consoles``: their own venv, with the python-qpid-proton 0.24 that qpid-bow pins); without it the
tests skip. Each does list, create, stats, purge and delete."""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from proton import Message
from proton.utils import BlockingConnection

from tests.support.broker import wait_until

CONSOLES = Path(__file__).resolve().parents[2] / "build" / "qmf-consoles" / "bin"


def console_or_skip(name: str) -> Path:
    path = CONSOLES / name
    if not path.exists():
        pytest.skip("no %s (make qmf-consoles)" % path)
    return path


def qb(broker, *args) -> str:
    result = subprocess.run([str(console_or_skip("qb"))] + list(args) + ["-b", "amqp://" + broker.url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def fill(broker, queue: str, count: int) -> None:
    conn = BlockingConnection(broker.url, timeout=60)
    try:
        sender = conn.create_sender(queue)
        for i in range(count):
            sender.send(Message(body="m%d" % i))
    finally:
        conn.close()


def stats(broker, name: str) -> dict | None:
    """qb queue stats for one queue: {'depth': N, 'total': N} (None if not listed)."""
    out = qb(broker, "queue", "stats")
    blocks = [b.splitlines() for b in out.strip().split("\n\n") if b.strip()]
    for lines in blocks:
        if lines[0] == name:
            return {"depth": int(lines[1].split(":")[1]), "total": int(lines[2].split(":")[1])}
    return None


def test_qpid_bow(any_broker):
    name = "bow-%s" % uuid.uuid4().hex[:8]
    qb(any_broker, "queue", "create", name)
    assert stats(any_broker, name) == {"depth": 0, "total": 0}
    fill(any_broker, name, 5)
    assert stats(any_broker, name) == {"depth": 5, "total": 5}
    qb(any_broker, "queue", "purge", name)
    assert stats(any_broker, name) == {"depth": 0, "total": 5}
    dump = qb(any_broker, "route", "dump")
    assert name in dump
    qb(any_broker, "session", "outgoing")
    # connection kill, without --commit: lists the connections whose address ends as asked (every
    # address ends in a digit), reading their names as qpidd sends them (binary)
    conn = BlockingConnection(any_broker.url, timeout=60)
    try:
        out = qb(any_broker, "connection", "kill", *"0123456789").splitlines()
    finally:
        conn.close()
    assert out[0] == "Would kill connections:" and len(out) >= 2, out
    assert all(":connection:" in line for line in out[1:]), out
    qb(any_broker, "queue", "delete", name)
    assert stats(any_broker, name) is None


#: runs in the consoles' venv: brokerlso crafts each request, proton 0.24 sends it; prints JSON lines
BROKERLSO_DRIVER = r'''
import json, logging, sys, uuid
from proton import Message
from proton.utils import BlockingConnection
from brokerlso.qmfv2 import RequestCmd
logging.disable(logging.CRITICAL)
url, steps = sys.argv[1], json.loads(sys.argv[2])
conn = BlockingConnection(url, timeout=60)
receiver = conn.create_receiver(None, dynamic=True, credit=100)
sender = conn.create_sender("qmf.default.direct")
cmd = RequestCmd()
def plain(v):
    if isinstance(v, bytes): return v.decode()
    if isinstance(v, dict): return {plain(k): plain(x) for k, x in v.items()}
    if isinstance(v, list): return [plain(x) for x in v]
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
for step in steps:
    content, props = getattr(cmd, step[0])(*step[1:])
    cid = str(uuid.uuid4())
    sender.send(Message(body=content, properties=dict(props), subject="broker",
                        reply_to=receiver.remote_source.address, correlation_id=cid))
    answers = []
    while True:
        msg = receiver.receive(timeout=60)
        receiver.accept()
        if msg.correlation_id != cid:
            continue
        answers.append([plain(msg.properties.get("qmf.opcode")), plain(msg.body)])
        if "partial" not in msg.properties:
            break
    print(json.dumps(answers))
conn.close()
'''


def brokerlso(broker, *steps) -> list:
    python = console_or_skip("python")
    result = subprocess.run([str(python), "-c", BROKERLSO_DRIVER, broker.url, json.dumps(steps)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def listed(answers) -> dict:
    """{queue name: values} from the answers to list_queues."""
    return {o["_values"]["name"]: o["_values"] for opcode, body in answers for o in body}


def test_brokerlso(any_broker):
    name = "lso-%s" % uuid.uuid4().hex[:8]
    (created, queues) = brokerlso(any_broker, ["create_queue", name], ["list_queues"])
    assert created == [["_method_response", {"_arguments": {}}]]
    assert listed(queues)[name]["msgDepth"] == 0
    fill(any_broker, name, 3)
    (queues,) = brokerlso(any_broker, ["list_queues"])
    assert (listed(queues)[name]["msgDepth"], listed(queues)[name]["msgTotalEnqueues"]) == (3, 3)
    purged, queues, deleted, after = brokerlso(any_broker, ["purge_queue", name], ["list_queues"],
                                               ["delete_queue", name], ["list_queues"])
    assert purged[0][0] == "_method_response"
    assert listed(queues)[name]["msgDepth"] == 0
    assert deleted[0][0] == "_method_response"
    assert name not in listed(after)
