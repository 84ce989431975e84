"""The QMF agent under odd input: a client's connection property that does not fit the schema must
not break listings for everybody; a request that does not decode is rejected (amqp:decode-error)
with one log line for the whole run of them; a method call does not walk the queues."""
from __future__ import annotations

import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from proton import Message, symbol
from proton.utils import BlockingConnection

from cypid.pyx.codec import Described, encode, ulong
from tests.support.rawclient import DISPOSITION, FLOW, SENDER, RawClient, source, target

BIN = Path(sys.prefix) / "bin"


def tool(name, broker, *args):
    return subprocess.run([str(BIN / name), "-b", broker.url] + list(args), capture_output=True, text=True,
                          timeout=120)


def test_odd_client_pid_does_not_break_listings(cypid):
    odd = BlockingConnection(cypid.url, timeout=30, properties={
        symbol("qpid.client_pid"): "not-a-number", symbol("qpid.client_process"): "oddball"})
    try:
        for args in (["-c"], ["-g"]):
            result = tool("qpid-stat", cypid, *args)
            assert result.returncode == 0, result.stderr
            assert "Traceback" not in result.stderr
        listed = tool("qpid-stat", cypid, "-c").stdout
        assert "oddball" in listed and "qpid-stat" in listed
    finally:
        odd.close()
    assert len(cypid.log_lines(r"remotePid.*does not fit the schema")) == 1


def qmf_request(app_properties: bytes, body: bytes) -> bytes:
    props = encode(Described(ulong(0x73), [None, None, "qmf.default.direct", "broker", "amq.direct/nowhere"]))
    return props + app_properties + body


GOOD_APP = encode(Described(ulong(0x74), {"x-amqp-0-10.app-id": "qmf2", "qmf.opcode": "_query_request"}))
GOOD_BODY = encode(Described(ulong(0x77), {"_what": "OBJECT", "_schema_id": {"_class_name": "queue"}}))
#: a map whose first key is a list: the message scan accepts it, decoding it fails
BAD_MAP = b"\xc1\x03\x02\x45\x41"
BAD_APP = b"\x00\x53\x74" + BAD_MAP
BAD_BODY = b"\x00\x53\x77" + BAD_MAP


@pytest.mark.solo    # a bystander's round trip bound (0.5 s): timed alone, after the parallel pass
def test_undecodable_request_is_rejected_and_logged_once(cypid):
    bystander = BlockingConnection(cypid.url, timeout=30)
    by_receiver = bystander.create_receiver(None, dynamic=True)
    by_sender = bystander.create_sender(by_receiver.remote_source.address)
    with RawClient.connect(cypid) as c:
        c.handshake()
        ch = c.begin(0)
        c.attach(ch, "qmf", 0, SENDER, src=source("me"), tgt=target("qmf.default.direct"))
        c.expect(FLOW, ch)
        bad = [c.transfer(ch, 0, qmf_request(GOOD_APP, BAD_BODY)) for _ in range(20)]
        bad += [c.transfer(ch, 0, qmf_request(BAD_APP, GOOD_BODY)) for _ in range(20)]
        good = c.transfer(ch, 0, qmf_request(GOOD_APP, GOOD_BODY))
        outcomes = {}
        while len(outcomes) < len(bad) + 1:
            d = c.expect(DISPOSITION, ch, skip=(FLOW,))
            for did in range(d.field(1), d.field(2, d.field(1)) + 1):
                outcomes[did] = d.field(4)
        for did in bad:
            assert outcomes[did].descriptor == 0x25, outcomes[did]            # rejected
            assert str(outcomes[did].value[0].value[0]) == "amqp:decode-error"
        assert outcomes[good].descriptor == 0x24                              # accepted
        c.close_cleanly()
    start = time.monotonic()
    by_sender.send(Message(body="still here"))
    assert by_receiver.receive(timeout=30).body == "still here"
    by_receiver.accept()
    assert time.monotonic() - start < 0.5
    bystander.close()
    assert len(cypid.log_lines(r"QMF request from .* rejected: it does not decode")) == 1
    assert "Traceback" not in cypid.log_text()


class _NoWalk(dict):
    """A queue registry that fails the test if anything walks it (lookups by name are fine)."""

    def values(self):
        raise AssertionError("a method call walked every queue")

    __iter__ = items = values


def test_a_method_call_does_not_walk_the_queues():
    from cypid.broker.management.objects import Snapshot
    broker = types.SimpleNamespace(nodes=types.SimpleNamespace(queues=_NoWalk(q1=object()), exchanges={}),
                                   connections=(), options=None, loop=None)
    agent = types.SimpleNamespace(broker=broker)
    snap = Snapshot(agent)
    assert snap.target("broker", "amqp-broker") is broker
    assert snap.target("queue", "q1") is broker.nodes.queues["q1"]
    assert snap.target("queue", "nope") is None
    assert snap.target("broker", "other") is None
