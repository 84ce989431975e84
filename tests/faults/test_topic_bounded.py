"""FAULT TEST: a hostile publisher sends routing keys of thousands of words to a topic exchange.

Topic matching used to cost the square of a key's words: one 4,000-word subject against a
``#.error.#`` binding froze the broker's loop for seconds. Now a key is matched in one walk over
its words, and keys longer than TOPIC_KEY_LIMIT (255) bytes are refused with ``amqp:invalid-field``
naming the limit. While the hostile client does its worst, a bystander's round trip stays under
0.5 s, nothing it sent reaches a subscriber, and a key of ordinary length still routes.
"""
import threading
import time

import pytest
from proton import Delivery, Message
from proton.utils import BlockingConnection

from tests.support.amqp import TOPIC_FILTER, BindingFilter
from tests.support.faults import assert_no_trouble

# The 0.5 s bystander bound is about the broker, not about test workers competing for the cores:
# make test runs these tests alone (see the Makefile).
pytestmark = pytest.mark.solo

PATTERNS = ("#.error.#", "#.a.#.a.#")
HOSTILE_KEYS = [".".join([word] * n) for n in (4000, 8000) for word in ("error", "a", "w")]
BOUND = 0.5


def _refusal(broker, subject):
    """Send one message with ``subject`` to amq.topic on a fresh connection; the condition and
    description of the rejected outcome it was refused with. Only that message is refused: the
    same link then sends an ordinary message."""
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        sender = conn.create_sender("amq.topic")
        delivery = sender.link.send(Message(subject=subject, body="hostile"))
        conn.wait(lambda: delivery.remote_state, msg="an outcome for the hostile message")
        if delivery.remote_state != Delivery.REJECTED:
            return None
        text = str(delivery.remote.condition)
        sender.send(Message(subject="ordinary.key", body="after"))   # the link is still usable
        return text
    finally:
        try:
            conn.close()
        except Exception:
            pass


def test_long_topic_keys_are_refused_and_do_not_stall_others(broker, bystander):
    subscriber = BlockingConnection(broker.url, timeout=20)
    receivers = [subscriber.create_receiver("amq.topic", credit=100, name="sub-%d" % i,
                                            options=BindingFilter(TOPIC_FILTER, p))
                 for i, p in enumerate(PATTERNS)]
    refusals = []
    errors = []

    def hostile():
        try:
            for _ in range(2):
                for key in HOSTILE_KEYS:
                    refusals.append(_refusal(broker, key))
        except Exception as e:   # pragma: no cover - reported below
            errors.append(e)

    worker = threading.Thread(target=hostile, daemon=True)
    worker.start()
    worst = 0.0
    rounds = 0
    while worker.is_alive() or rounds < 3:
        start = time.monotonic()
        bystander.check()
        worst = max(worst, time.monotonic() - start)
        rounds += 1
    worker.join(60)
    assert not errors, errors
    assert worst < BOUND, "a bystander round trip took %.2f s while long keys were routed" % worst
    assert len(refusals) == 2 * len(HOSTILE_KEYS)
    for text in refusals:
        assert text is not None and "amqp:invalid-field" in text and "255 bytes" in text, text

    # A key of ordinary length still routes, and none of the refused messages was delivered.
    sender = subscriber.create_sender("amq.topic", name="ordinary")
    sender.send(Message(subject="x.error.a.y.a", body="ordinary"))
    for r in receivers:
        msg = r.receive(timeout=10)   # (a subscription to an exchange is sent pre-settled)
        assert msg.body == "ordinary"
    subscriber.close()
    assert_no_trouble(broker)
