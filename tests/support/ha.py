"""HA clusters of real broker processes for tests (qpidd's ha_test.py harness, the ideas only).

``HaConsole(url)``: a QMF v2 console on python-qpid-proton that connects with the ``qpid.ha-admin``
property (what qpid-ha does), so it is admitted by a backup too: ``habroker()`` (the HA object's
values), ``status()``, ``promote()``, ``set_brokers_url(url)``, ``queues()`` ({name: values}).

``HaCluster(factory, n, args)``: n brokers started with ``--ha-cluster yes`` on ports of their own
(port 0); each is told the brokers URL over QMF (setBrokersUrl, since the ports are only known once
they listen), broker 0 is promoted and the others become ready. ``kill(i)`` is SIGKILL.
"""
from __future__ import annotations

import uuid

import pytest
from proton import Message, symbol
from proton.utils import BlockingConnection

from .amqp import qmf_text
from .broker import wait_until

HA_ID = "org.apache.qpid.ha:habroker:ha-broker"
TIMEOUT = 60
#: qpidd's ha_test.py: fast link maintenance, a short heartbeat, replicate everything by default
HA_ARGS = ("--ha-cluster", "yes", "--link-maintenance-interval", "0.1", "--link-heartbeat-interval", "5",
           "--ha-replicate", "all")


@pytest.fixture
def brokers(broker_factory):
    """conftest's broker_factory (brokers stopped after the test, logs printed if it failed, the leak
    audit of every clean stop)."""
    return broker_factory


class QmfError(Exception):
    def __init__(self, values):
        super().__init__(values.get("error_text"))
        self.code = values.get("error_code")
        self.text = values.get("error_text")


class HaConsole:
    def __init__(self, url, timeout=TIMEOUT):
        self.timeout = timeout
        self.conn = BlockingConnection(url, timeout=timeout, properties={symbol("qpid.ha-admin"): 1})
        self.receiver = self.conn.create_receiver(None, dynamic=True, credit=500)
        self.reply_to = self.receiver.remote_source.address
        self.sender = self.conn.create_sender("qmf.default.direct")

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _request(self, opcode, body):
        cid = str(uuid.uuid4())
        self.sender.send(Message(subject="broker", reply_to=self.reply_to, correlation_id=cid, body=body,
                                 properties={"qmf.opcode": opcode, "x-amqp-0-10.app-id": "qmf2",
                                             "method": "request"}))
        out = []
        while True:
            msg = self.receiver.receive(timeout=self.timeout)
            self.receiver.accept()
            msg.body = qmf_text(msg.body)      # QMF strings arrive as binary, as from qpidd
            if msg.correlation_id != cid:
                continue
            if msg.properties.get("qmf.opcode") == "_exception":
                raise QmfError(msg.body["_values"])
            out.append(msg)
            if "partial" not in (msg.properties or {}):
                return out

    def query(self, class_name, package="org.apache.qpid.broker"):
        body = {"_what": "OBJECT", "_schema_id": {"_class_name": class_name, "_package_name": package}}
        return [obj["_values"] for msg in self._request("_query_request", body) for obj in msg.body]

    def habroker(self):
        found = self.query("habroker", "org.apache.qpid.ha")
        return found[0] if found else None

    def status(self):
        return self.habroker()["status"]

    def call(self, method, arguments=None, object_name=HA_ID):
        body = {"_object_id": {"_object_name": object_name}, "_method_name": method,
                "_arguments": arguments or {}}
        return self._request("_method_request", body)[0].body.get("_arguments", {})

    def promote(self):
        return self.call("promote")

    def set_brokers_url(self, url):
        return self.call("setBrokersUrl", {"url": url})

    def queues(self):
        return {q["name"]: q for q in self.query("queue")}


def _url(broker):
    """A broker's address: a BrokerProcess's url, or a URL string (with credentials, say)."""
    return broker if isinstance(broker, str) else broker.url


def status_of(broker, timeout=TIMEOUT):
    with HaConsole(_url(broker), timeout) as c:
        return c.status()


def wait_status(broker, status, timeout=TIMEOUT):
    """Poll ``broker``'s HA status on one admin connection (a new one only if it breaks) until it is
    ``status``."""
    url = _url(broker)
    console = None
    seen = []

    def check():
        nonlocal console
        try:
            if console is None:
                console = HaConsole(url, 20)
            seen[:] = [console.status()]
            return seen[0] == status
        except Exception as e:
            seen[:] = [repr(e)]
            if console is not None:
                try:
                    console.close()
                except Exception:
                    pass
                console = None
            return False
    try:
        return wait_until(check, timeout, interval=0.02,
                          message=lambda: f"{url} status {status} (last seen: {seen and seen[0]})")
    finally:
        if console is not None:
            console.close()


def queue_depths(broker):
    with HaConsole(_url(broker)) as c:
        return {name: q.get("msgDepth") for name, q in c.queues().items()}


def fill(broker, queue, count, size=1024, durable=True, properties=None):
    """Declare ``queue`` (unbounded unless ``properties`` say) and put ``count`` messages of ``size``
    bytes on it with cypid.client, every one accepted."""
    import asyncio

    from cypid.client import connect, encode_message

    props = {"qpid.max_size": 0, "qpid.max_count": 0, "durable": durable}
    props.update(properties or {})

    async def run():
        conn = await connect(broker.url, timeout=TIMEOUT)
        snd = await conn.sender(queue, node="queue", create=True, properties=props)
        await snd.send(encode_message(b"x" * size, durable=durable), count=count)
        await snd.wait_settled(timeout=TIMEOUT * 5)
        await conn.close()
    asyncio.run(run())


def digest(broker, queue, count, size, timeout=TIMEOUT):
    """sha256 of the last ``size`` bytes of each of the first ``count`` messages on ``queue``, browsed
    in queue order on an admin connection (a backup's copy too): two brokers' queues are identical
    when their digests are."""
    import asyncio
    import hashlib

    from cypid.client import connect

    async def run():
        conn = await connect(_url(broker), timeout=timeout, properties={"qpid.ha-admin": 1})
        rcv = await conn.receiver(queue, credit=5000, browse=True, settled=True)
        h = hashlib.sha256()
        for _ in range(count):
            data = await rcv.get_raw(timeout=timeout * 2)
            h.update(data[-size:])
        await conn.close()
        return h.hexdigest()
    return asyncio.run(run())


class HaCluster:
    def __init__(self, factory, n=3, args=(), promote=True, credentials=""):
        self.factory = factory
        self.credentials = credentials      # "user:password@" for the consoles of --auth brokers
        self.brokers = [factory(*HA_ARGS, *args) for _ in range(n)]
        self.url = ",".join(b.url for b in self.brokers)
        for b in self.brokers:
            with HaConsole(self.admin_url(b)) as c:
                c.set_brokers_url(self.url)
        if promote:
            self.promote(0)
            for b in self.brokers[1:]:
                wait_status(self.admin_url(b), "ready")

    def admin_url(self, broker):
        return self.credentials + broker.url

    def __getitem__(self, i):
        return self.brokers[i]

    def promote(self, i):
        with HaConsole(self.admin_url(self.brokers[i])) as c:
            c.promote()
        wait_status(self.admin_url(self.brokers[i]), "active")

    def kill(self, i):
        self.brokers[i].kill()


__all__ = ["HaConsole", "HaCluster", "QmfError", "HA_ARGS", "status_of", "wait_status", "queue_depths", "fill", "digest"]
