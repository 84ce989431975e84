"""The tools' console with replies as python-qpid-proton gives qpidd's: strings as AMQP binary,
handed back as views into memory that proton reuses for the next message received.

``ReusedBuffers`` is FakeQpidd (tests/unit/test_tools_fakeagent.py) whose every string in a reply
becomes a ``memoryview`` into one arena that the next ``receive`` overwrites, as proton's decoder
buffer is. A console that keeps the views until all partial replies arrived reads the later
message's bytes (qpid-stat -q printed heap bytes and NULs as queue names against qpidd).
"""
from __future__ import annotations

from proton import Message

from cypid.tools import qmf
from tests.unit.test_tools_fakeagent import FakeQpidd

ARENA = 1 << 20


class ReusedBuffers(FakeQpidd):
    def __init__(self, chunk: int = 100):
        super().__init__(chunk=chunk)
        self.arena = bytearray(ARENA)
        self.used = 0
        self.views = 0

    def _view(self, text: str) -> memoryview:
        data = text.encode("utf-8")
        start, self.used = self.used, self.used + len(data)
        self.arena[start:self.used] = data
        self.views += 1
        return memoryview(self.arena)[start:self.used]

    def _binary(self, value):
        if isinstance(value, str):
            return self._view(value)
        if isinstance(value, dict):
            return {k: self._binary(v) for k, v in value.items()}  # keys stay strings, as qpidd's
        if isinstance(value, list):
            return [self._binary(v) for v in value]
        return value

    def receive(self, timeout):
        message = super().receive(timeout)
        if message is None:
            return None
        # the next decode reuses the buffer: what the previous message's views showed is gone
        self.arena[:self.used] = b"\xde" * self.used
        self.used = 0
        return Message(body=self._binary(message.body), correlation_id=message.correlation_id,
                       properties=message.properties)


def agent_with_queues(count: int, chunk: int = 100) -> tuple[qmf.BrokerAgent, list[str]]:
    fake = ReusedBuffers(chunk=chunk)
    names = ["queue-%04d-%s" % (i, "x" * (i % 7)) for i in range(count)]
    for name in names:
        fake.add_queue(name, bind_default=False)
    return qmf.BrokerAgent(fake, timeout=5), names


def test_query_in_partial_replies_keeps_every_name():
    agent, names = agent_with_queues(250)
    queues = agent.get_objects("queue")
    assert agent.transport.views > 250            # the names did arrive as views
    assert sorted(q.name for q in queues) == sorted(names)
    assert all(isinstance(q.name, str) for q in queues)
    assert {q.get("vhostRef") for q in queues} == {"org.apache.qpid.broker:broker:amqp-broker,/"}
