"""A durable node's lifetime policy across a restart (broker/lifetime.py, broker/config_store.py's
``lifetimes``): it governs the node again; the link that created it is gone, and the policy is
applied at the next event that applies it (a link detaching, the last message leaving)."""
import pytest
from proton import Message, symbol
from proton.reactor import DynamicNodeProperties
from proton.utils import BlockingConnection

from tests.interop.test_terminus_options import POLICY, wait_detached
from tests.support.broker import wait_until
from tests.support.ha import HaConsole


def _queues(broker):
    console = HaConsole(broker.url, timeout=20)
    try:
        return set(console.queues())
    finally:
        console.close()


def _durable_dynamic_queue(broker, policy, bodies):
    """A durable dynamic queue with ``policy``, holding ``bodies`` (durable messages); its creating
    link closed (the policy keeps the queue: it has messages, or a producer stays)."""
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        props = DynamicNodeProperties({symbol("lifetime-policy"): POLICY[policy], symbol("durable"): True})
        r = conn.create_receiver(None, dynamic=True, name="creator", credit=0, options=props)
        address = r.remote_source.address
        s = conn.create_sender(address)
        for body in bodies:
            s.send(Message(body=body, durable=True))
        r.close()
        s.close()
    finally:
        conn.close()
    return address


@pytest.mark.parametrize("kill", [False, True])
def test_delete_on_no_messages_survives_a_restart(broker_factory, kill):
    broker = broker_factory()
    address = _durable_dynamic_queue(broker, "delete-on-no-messages", ["one", "two"])
    assert address in _queues(broker)
    broker.restart(kill=kill)
    assert address in _queues(broker)           # a restart alone deletes nothing
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        c = conn.create_receiver(address, name="late", credit=10)
        for body in ("one", "two"):
            assert c.receive(timeout=10).body == body
            c.accept()
        wait_detached(conn, c)                  # emptied: the policy deletes it (not auto-delete)
    finally:
        conn.close()
    wait_until(lambda: address not in _queues(broker), 10, message="queue %s deleted once empty" % address)
    broker.restart()
    assert address not in _queues(broker)       # its row went with it


def test_delete_on_no_links_counts_producers_after_a_restart(broker_factory):
    broker = broker_factory()
    creator = BlockingConnection(broker.url, timeout=20)
    props = DynamicNodeProperties({symbol("lifetime-policy"): POLICY["delete-on-no-links"],
                                   symbol("durable"): True})
    address = creator.create_receiver(None, dynamic=True, name="creator", credit=0,
                                      options=props).remote_source.address
    assert address in _queues(broker)
    broker.restart(kill=True)                   # its link attached: no detach ever reaches the policy
    try:
        creator.close()
    except Exception:       # noqa: BLE001 -- the broker it spoke to is gone
        pass
    assert address in _queues(broker)           # a restart alone deletes nothing
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        s = conn.create_sender(address)
        c = conn.create_receiver(address, name="consumer", credit=10)
        s.send(Message(body="m", durable=True))
        assert c.receive(timeout=10).body == "m"
        c.accept()
        c.close()
        assert address in _queues(broker)       # the producer is still attached (plain auto-delete
        s.close()                               # would have gone with the last consumer)
        wait_until(lambda: address not in _queues(broker), 10, message="queue %s deleted" % address)
    finally:
        conn.close()
