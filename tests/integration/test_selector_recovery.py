"""A selector consumer on a queue recovered after a restart selects exactly the messages it would
have selected before it. Recovery leaves message bodies in the journal until a consumer needs them;
the selector reads a message back when it looks at it (its application properties, message-id,
reply-to, subject ... are in those bytes), so nothing reads as NULL that was not NULL before."""
import pytest
from proton import Message
from proton.reactor import Copy, Selector
from proton.utils import BlockingConnection

from tests.support.amqp import DIRECT_FILTER, BindingFilter, CreateQueue
from tests.support.blocking import drain

SELECTOR = "colour = 'red' AND n < 15 AND JMSCorrelationID IS NOT NULL"
COLOURS = ["red", "green", "blue"]


def messages():
    return [Message(body="m%d" % i, durable=True, subject=COLOURS[i % 3], correlation_id="c%d" % i,
                    properties={"colour": COLOURS[i % 3], "n": i}) for i in range(20)]


def expected():
    return ["m%d" % i for i in range(20) if COLOURS[i % 3] == "red" and i < 15]


def take_all(conn, receiver, accept=True):
    out = []
    while drain(conn, receiver, 50):
        while receiver.fetcher.has_message:
            out.append(receiver.receive(timeout=10).body)
            if accept:
                receiver.accept()
    return out


@pytest.mark.parametrize("kill", [False, True], ids=["stop", "kill-9"])
def test_selector_selects_the_same_after_a_restart(broker_factory, kill):
    broker = broker_factory()
    conn = BlockingConnection(broker.url, timeout=20)
    sender = conn.create_sender("sel-durable", options=CreateQueue({"durable": True}))
    for m in messages():
        sender.send(m)
    conn.close()
    broker.restart(kill=kill)
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        browser = conn.create_receiver("sel-durable", name="browse", credit=None,
                                       options=[Copy(), Selector(SELECTOR)])
        assert take_all(conn, browser, accept=False) == expected()
        browser.close()
        reds = conn.create_receiver("sel-durable", name="reds", credit=None, options=Selector(SELECTOR))
        assert take_all(conn, reds) == expected()
        reds.close()
        blues = conn.create_receiver("sel-durable", name="blues", credit=None,
                                     options=BindingFilter(DIRECT_FILTER, "blue"))
        assert take_all(conn, blues) == ["m%d" % i for i in range(20) if i % 3 == 2]
        blues.close()
        rest = conn.create_receiver("sel-durable", name="rest", credit=None)
        assert take_all(conn, rest) == ["m%d" % i for i in range(20)
                                        if "m%d" % i not in expected() and i % 3 != 2]
        # what came back from disk is delivered whole
        conn.create_sender("sel-durable").send(Message(body="after", durable=True, properties={"colour": "red", "n": 1},
                                                       correlation_id="x"))
        last = conn.create_receiver("sel-durable", name="last", credit=1, options=Selector(SELECTOR))
        msg = last.receive(timeout=10)
        assert (msg.body, msg.properties, msg.correlation_id) == ("after", {"colour": "red", "n": 1}, "x")
        last.accept()
    finally:
        conn.close()
