"""The terminus options of issue 12, each driven by python-qpid-proton against a real broker:

- ``modified`` outcomes: delivery-failed counts an attempt, undeliverable-here keeps the message
  from that link (it stays for the others), message-annotations are merged into the redelivered
  message;
- ``qpid.queue_msg_sequence``: each message a queue takes carries the queue's count in its
  message-annotations under the key the argument names (a uint32), each queue numbering its copy;
- the lifetime policies of dynamic nodes (delete-on-close, delete-on-no-links,
  delete-on-no-messages, delete-on-no-links-or-messages), as the specification defines them.
"""
import subprocess
import sys
from pathlib import Path

import pytest
from proton import Delivery, Described, Message, symbol, ulong
from proton.reactor import Copy, DynamicNodeProperties, LinkOption, Selector
from proton.utils import LinkDetached, SendException

from tests.support.amqp import Capabilities, CreateExchange, CreateQueue
from tests.support.blocking import drain
from tests.support.broker import wait_until
from tests.support.ha import HaConsole


def send(conn, address, messages, options=None):
    sender = conn.create_sender(address, options=options)
    for m in messages:
        sender.send(m)
    sender.close()


def qpid_config(broker, *args):
    tool = [str(Path(sys.prefix) / "bin" / "qpid-config"), "-b", broker.url]
    r = subprocess.run(tool + list(args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def modify(receiver, failed=False, here=False, annotations=None):
    """Give the oldest unsettled delivery back as `modified` with the given fields."""
    dlv = receiver.fetcher.unsettled[0]
    dlv.local.failed = failed
    dlv.local.undeliverable = here
    if annotations is not None:
        dlv.local.annotations = annotations
    receiver.settle(Delivery.MODIFIED)


# -- modified ---------------------------------------------------------------------------------------

def test_modified_merges_annotations_into_the_redelivered_message(conn):
    send(conn, "mod-ann", [Message(body="m", annotations={symbol("x-opt-a"): 1, symbol("x-opt-keep"): "k"})],
         options=CreateQueue())
    r = conn.create_receiver("mod-ann", credit=1)
    first = r.receive(timeout=10)
    assert first.annotations == {"x-opt-a": 1, "x-opt-keep": "k"}
    modify(r, failed=True, annotations={symbol("x-opt-a"): 3, symbol("x-opt-b"): "two"})
    again = r.receive(timeout=10)
    assert again.body == "m"
    assert again.annotations == {"x-opt-a": 3, "x-opt-keep": "k", "x-opt-b": "two"}
    assert again.delivery_count == 1 and not again.first_acquirer
    # without delivery-failed the count stays; annotations merge again over the merged ones
    modify(r, annotations={symbol("x-opt-c"): True})
    third = r.receive(timeout=10)
    assert third.delivery_count == 1
    assert third.annotations == {"x-opt-a": 3, "x-opt-keep": "k", "x-opt-b": "two", "x-opt-c": True}
    r.accept()


def test_modified_annotations_on_a_message_without_any(conn):
    send(conn, "mod-ann2", [Message(body="plain", properties={"p": 1})], options=CreateQueue())
    r = conn.create_receiver("mod-ann2", credit=1)
    assert r.receive(timeout=10).annotations is None
    modify(r, annotations={symbol("x-opt-why"): "retry later"})
    again = r.receive(timeout=10)
    assert (again.body, again.properties, again.annotations) == ("plain", {"p": 1}, {"x-opt-why": "retry later"})
    r.accept()


def test_undeliverable_here_is_not_redelivered_to_that_link(conn):
    send(conn, "mod-here", [Message(body="a"), Message(body="b"), Message(body="c")], options=CreateQueue())
    r1 = conn.create_receiver("mod-here", name="r1", credit=None)
    assert drain(conn, r1, 1)
    assert r1.receive(timeout=10).body == "a"
    modify(r1, here=True)
    got = []
    while drain(conn, r1, 10):
        got.append(r1.receive(timeout=10).body)
        r1.accept()
    assert got == ["b", "c"]        # "a" went back to the queue, and not to r1
    r2 = conn.create_receiver("mod-here", name="r2", credit=1)
    msg = r2.receive(timeout=10)
    assert (msg.body, msg.delivery_count) == ("a", 0)    # undeliverable-here alone counts nothing
    modify(r2, failed=True, here=True)
    # r2 refused it too: a third consumer gets it, counted once; neither r1 nor r2 sees it again
    assert not drain(conn, r1, 5) and not drain(conn, r2, 5)
    r3 = conn.create_receiver("mod-here", name="r3", credit=1)
    msg = r3.receive(timeout=10)
    assert (msg.body, msg.delivery_count) == ("a", 1)
    r3.accept()


def test_undeliverable_here_with_a_selector(conn):
    send(conn, "mod-sel", [Message(body=str(i), properties={"i": i}) for i in range(4)], options=CreateQueue())
    r = conn.create_receiver("mod-sel", name="sel", credit=None, options=Selector("i >= 2"))
    assert drain(conn, r, 1)
    assert r.receive(timeout=10).body == "2"
    modify(r, here=True)
    assert drain(conn, r, 10)
    assert r.receive(timeout=10).body == "3"
    r.accept()
    assert not drain(conn, r, 10)
    other = conn.create_receiver("mod-sel", name="plain", credit=10)
    assert sorted(other.receive(timeout=10).body for _ in range(3)) == ["0", "1", "2"]
    other.accept()


# -- qpid.queue_msg_sequence ------------------------------------------------------------------------

def test_queue_msg_sequence_numbers_each_queues_messages(conn):
    send(conn, "seq-q", [Message(body=str(i), annotations={symbol("x-opt-own"): i}) for i in range(3)],
         options=CreateQueue({"qpid.queue_msg_sequence": "my-seq"}))
    r = conn.create_receiver("seq-q", credit=10)
    got = [r.receive(timeout=10) for _ in range(3)]
    r.accept()
    assert [m.annotations for m in got] == [{"x-opt-own": i, "my-seq": i + 1} for i in range(3)]
    assert all(type(m.annotations["my-seq"]).__name__ == "uint" for m in got)


@pytest.mark.parametrize("durable", [False, True])
def test_queue_msg_sequence_through_an_exchange(broker, conn, durable):
    """Two sequencing queues and a plain one bound to a fanout exchange: each numbers its own copy,
    the plain queue's copy carries no number."""
    conn.create_sender("seq-fan", options=CreateExchange("fanout")).close()
    props = {"durable": durable}
    for name, extra in (("seq-a", {"qpid.queue_msg_sequence": "n"}), ("seq-b", {"qpid.queue_msg_sequence": "n"}),
                        ("seq-plain", {})):
        conn.create_sender(name, options=CreateQueue(dict(props, **extra))).close()
    # seq-b takes a message of its own first, so the two counts differ
    send(conn, "seq-b", [Message(body="own", durable=durable)])
    for name in ("seq-a", "seq-b", "seq-plain"):
        qpid_config(broker, "bind", "seq-fan", name)
    send(conn, "seq-fan", [Message(body="x%d" % i, durable=durable) for i in range(2)])

    def annotations(queue, count):
        r = conn.create_receiver(queue, credit=count)
        out = [(m.body, m.annotations) for m in (r.receive(timeout=10) for _ in range(count))]
        r.accept()
        r.close()
        return out
    assert annotations("seq-a", 2) == [("x0", {"n": 1}), ("x1", {"n": 2})]
    assert annotations("seq-b", 3) == [("own", {"n": 1}), ("x0", {"n": 2}), ("x1", {"n": 3})]
    assert annotations("seq-plain", 2) == [("x0", None), ("x1", None)]


# -- lifetime policies --------------------------------------------------------------------------------

POLICY = {name: Described(symbol("amqp:%s:list" % name), [])
          for name in ("delete-on-close", "delete-on-no-links", "delete-on-no-messages",
                       "delete-on-no-links-or-messages")}


def lifetime(name, by_code=False):
    value = Described(ulong(0x2B + list(POLICY).index(name)), []) if by_code else POLICY[name]
    return DynamicNodeProperties({symbol("lifetime-policy"): value})


@pytest.fixture
def queues(broker):
    """queues() -> the broker's queue names, over QMF (a probe link would change what is counted)."""
    console = HaConsole(broker.url, timeout=20)
    yield lambda: set(console.queues())
    console.close()


def wait_detached(conn, receiver, action=None):
    """``action()`` (if given) makes the broker detach ``receiver`` (or a sender) with
    amqp:resource-deleted (its node is deleted): proton raises that in whatever call meets it."""
    with pytest.raises(LinkDetached) as info:
        if action is not None:
            action()
        conn.wait(lambda: False, timeout=10, msg="the detach of %s" % receiver.link.name)
    assert info.value.link.name == receiver.link.name
    assert receiver.link.remote_condition.name == "amqp:resource-deleted", receiver.link.remote_condition


class DynamicTarget(LinkOption):
    """A sender's dynamic target with node properties (BlockingConnection has no dynamic sender)."""

    def __init__(self, properties):
        self.properties = properties

    def apply(self, link):
        link.target.address = None
        link.target.dynamic = True
        link.target.properties.put_dict(self.properties)


def dynamic_receiver(conn, policy, by_code=False, name=None):
    r = conn.create_receiver(None, dynamic=True, name=name, credit=10, options=lifetime(policy, by_code))
    return r, r.remote_source.address


def test_delete_on_close_goes_with_the_creating_link(broker, conn, queues):
    r, address = dynamic_receiver(conn, "delete-on-close")
    assert address in queues()
    other = conn.create_receiver(address, name="second", credit=10)
    send(conn, address, [Message(body="left behind")])
    assert other.receive(timeout=10).body == "left behind"     # not accepted: still on the queue
    wait_detached(conn, other, r.close)     # the other consumer did not keep it alive
    wait_until(lambda: address not in queues(), 10, message="queue %s deleted" % address)


def test_delete_on_no_links_waits_for_every_link(conn, queues):
    r, address = dynamic_receiver(conn, "delete-on-no-links", by_code=True)
    sender = conn.create_sender(address)
    browser = conn.create_receiver(address, name="browser", credit=10, options=Copy())
    sender.send(Message(body="kept"))
    r.close()
    assert address in queues()          # the sender and the browser are still attached
    browser.close()
    assert address in queues()          # the sender still is
    sender.close()
    wait_until(lambda: address not in queues(), 10, message="queue %s deleted" % address)


def test_delete_on_no_messages_waits_for_the_link_and_the_last_message(conn, queues):
    r, address = dynamic_receiver(conn, "delete-on-no-messages")
    send(conn, address, [Message(body="one"), Message(body="two")])
    r.close()       # the controlling link went, two messages are left (it held them unsettled)
    assert address in queues()
    c = conn.create_receiver(address, name="late", credit=10)
    assert c.receive(timeout=10).body == "one"
    c.accept()
    assert address in queues()
    assert c.receive(timeout=10).body == "two"
    c.accept()
    wait_detached(conn, c)
    wait_until(lambda: address not in queues(), 10, message="queue %s deleted once empty" % address)


def test_delete_on_no_messages_empty_when_the_link_goes(conn, queues):
    r, address = dynamic_receiver(conn, "delete-on-no-messages")
    other = conn.create_receiver(address, name="other", credit=10)
    wait_detached(conn, other, r.close)
    wait_until(lambda: address not in queues(), 10, message="queue %s deleted" % address)


def test_delete_on_no_links_or_messages(conn, queues):
    r, address = dynamic_receiver(conn, "delete-on-no-links-or-messages")
    send(conn, address, [Message(body="m")])
    msg = r.receive(timeout=10)
    assert msg.body == "m"
    r.close()                           # unsettled: "m" goes back; no links, one message
    assert address in queues()
    c = conn.create_receiver(address, name="second", credit=10)
    assert c.receive(timeout=10).body == "m"
    c.accept()
    assert address in queues()          # empty, but a link is attached
    c.close()
    wait_until(lambda: address not in queues(), 10, message="queue %s deleted" % address)


def test_dynamic_target_with_a_lifetime_policy(conn, queues):
    """A producer's dynamic target: delete-on-close goes with the sender."""
    sender = conn.create_sender(None, options=DynamicTarget({symbol("lifetime-policy"): POLICY["delete-on-close"]}))
    address = sender.link.remote_target.address
    assert address in queues()
    sender.send(Message(body="x"))
    r = conn.create_receiver(address, name="reader", credit=1)
    assert r.receive(timeout=10).body == "x"
    r.accept()
    wait_detached(conn, r, sender.close)
    wait_until(lambda: address not in queues(), 10, message="queue %s deleted" % address)



def test_producer_of_an_auto_deleted_queue_stays_attached_and_is_refused(conn, queues):
    """A client's reply queue goes when the client leaves; the server's sender to it stays attached
    and what it sends is rejected with amqp:not-found (a queue deleted by management detaches its
    producers instead: tests/interop/test_link_nodes.py)."""
    r = conn.create_receiver(None, dynamic=True, credit=10)
    address = r.remote_source.address
    sender = conn.create_sender(address)
    sender.send(Message(body="while it lasts"))
    assert r.receive(timeout=10).body == "while it lasts"
    r.accept()
    r.close()
    wait_until(lambda: address not in queues(), 10, message="queue %s auto-deleted" % address)
    with pytest.raises(SendException) as info:
        sender.send(Message(body="too late"))
    assert info.value.state == Delivery.REJECTED
    assert sender.link.state & sender.link.REMOTE_ACTIVE      # still attached
    sender.close()


@pytest.fixture
def exchanges(broker):
    """exchanges() -> the broker's exchange names, over QMF."""
    console = HaConsole(broker.url, timeout=20)
    yield lambda: {e["name"] for e in console.query("exchange")}
    console.close()


def dynamic_topic(conn, policy, name=None):
    r = conn.create_receiver(None, dynamic=True, name=name, credit=10,
                             options=[Capabilities("topic"), lifetime(policy)])
    return r, r.remote_source.address


def test_dynamic_exchange_delete_on_close(conn, exchanges):
    """A dynamic source with the topic capability is an exchange: delete-on-close deletes it when the
    receiver that made it detaches, though another receiver is still subscribed to it."""
    r, address = dynamic_topic(conn, "delete-on-close")
    assert address in exchanges()
    # the address names the exchange and r's subscription queue (both <container>_<link>): the
    # topic capability picks the exchange
    other = conn.create_receiver(address, name="other-sub", credit=10, options=Capabilities("topic"))
    sender = conn.create_sender(address, options=Capabilities("topic"))
    sender.send(Message(body="to both"))
    assert r.receive(timeout=10).body == "to both"
    assert other.receive(timeout=10).body == "to both"
    wait_detached(conn, sender, r.close)    # an exchange's producers go with it
    wait_until(lambda: address not in exchanges(), 10, message="exchange %s deleted" % address)


def test_dynamic_exchange_delete_on_no_links(conn, exchanges):
    r, address = dynamic_topic(conn, "delete-on-no-links")
    other = conn.create_receiver(address, name="other-sub", credit=10, options=Capabilities("topic"))
    sender = conn.create_sender(address, options=Capabilities("topic"))
    r.close()
    other.close()
    assert address in exchanges()       # the sender is still attached
    sender.close()
    wait_until(lambda: address not in exchanges(), 10, message="exchange %s deleted" % address)
