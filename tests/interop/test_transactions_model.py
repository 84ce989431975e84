"""Commit and rollback of sends and of acknowledgements, property-tested against a model.

Hypothesis draws programs of declare / send (in a transaction or not) / fetch (acquiring in a
transaction or not: a flow naming a txn-id, which the link keeps until that transaction's discharge) /
accept (in a transaction or not) / release / commit / rollback steps; each runs against a real broker on a fresh
queue and against a plain Python model of what the queue must hold. Every fetch must give a message
the model says is available (and must give one when the model has one); at the end the connection
closes (open transactions roll back, unsettled messages come back) and the queue must hold exactly
what the model says. The durable variant also restarts the broker first: what was committed is
what recovery finds.
"""
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.interop.test_transactions import make_queue
from tests.support.txclient import ACCEPTED, TRANSACTIONAL_STATE, TxClient, descriptor

steps = st.lists(st.one_of(
    st.just(("declare",)),
    st.tuples(st.just("send"), st.integers(-1, 3)),
    st.tuples(st.just("fetch"), st.integers(-1, 3)),
    st.tuples(st.just("ack"), st.integers(0, 7), st.integers(-1, 3)),
    st.tuples(st.just("release"), st.integers(0, 7)),
    st.tuples(st.just("commit"), st.integers(0, 3)),
    st.tuples(st.just("rollback"), st.integers(0, 3)),
), min_size=1, max_size=40)

_names = itertools.count(1)


class Model:
    def __init__(self):
        self.available = []        # bodies on the queue, available
        self.held = []             # [delivery-id, body, the txn that acquired it or None] fetched, unsettled
        self.txns = []             # [txn-id, sent bodies, retired bodies] open, in declare order
        self.link_txn = None       # the txn the receiver's transfers are acquired by

    def txn(self, i):
        return self.txns[i % len(self.txns)] if self.txns and i >= 0 else None


def run_program(broker, program, durable):
    queue = "model-%d" % next(_names)
    make_queue(broker, queue, durable=durable)
    model = Model()
    n = 0
    with TxClient(broker) as c:
        s = c.sender(queue)
        r = c.receiver(queue)
        for step in program:
            op = step[0]
            if op == "declare":
                if len(model.txns) < 4:
                    model.txns.append([c.declare(), [], []])
            elif op == "send":
                n += 1
                body = "m%d" % n
                t = model.txn(step[1])
                state = c.send(s, body, txn=t[0] if t else None, durable=durable)
                if t:
                    assert descriptor(state) == TRANSACTIONAL_STATE and descriptor(state.value[1]) == ACCEPTED
                    t[1].append(body)
                else:
                    assert descriptor(state) == ACCEPTED
                    model.available.append(body)
            elif op == "fetch":
                t = model.txn(step[1])
                got = c.fetch(r, 1, txn=t[0] if t else None)
                if t:
                    model.link_txn = t
                if model.available:
                    assert len(got) == 1, "the model has %r available; the broker gave nothing" % model.available
                    did, body = got[0]
                    assert body in model.available, (body, model.available)
                    acq = model.link_txn
                    state = c.states[did]
                    if acq:
                        assert descriptor(state) == TRANSACTIONAL_STATE and bytes(state.value[0]) == acq[0]
                    else:
                        assert state is None, state
                    model.available.remove(body)
                    model.held.append([did, body, acq])
                else:
                    assert got == [], got
            elif op == "ack" and model.held:
                did, body, _ = model.held.pop(step[1] % len(model.held))
                t = model.txn(step[2])
                c.accept(did, txn=t[0] if t else None)
                if t:
                    t[2].append(body)
            elif op == "release" and model.held:
                did, body, _ = model.held.pop(step[1] % len(model.held))
                c.release(did)
                model.available.append(body)
            elif op in ("commit", "rollback") and model.txns:
                t = model.txns.pop(step[1] % len(model.txns))
                assert descriptor(c.discharge(t[0], fail=op == "rollback")) == ACCEPTED
                if model.link_txn is t:
                    model.link_txn = None           # the link is no longer transactional
                if op == "commit":
                    model.available += t[1]
                    for h in model.held:            # its acquisitions stay, unsettled
                        if h[2] is t:
                            h[2] = None
                else:
                    model.available += t[2]
                    model.available += [h[1] for h in model.held if h[2] is t]
                    model.held = [h for h in model.held if h[2] is not t]     # the broker released them
    # the connection closed: open transactions rolled back, unsettled deliveries came back
    expected = model.available + [h[1] for h in model.held] + [b for t in model.txns for b in t[2]]
    if durable:
        broker.restart()
    with TxClient(broker, coordinator=False) as c:
        r = c.receiver(queue)
        got = [b for _, b in c.fetch(r, 1000)]
    assert sorted(got) == sorted(expected)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=steps)
def test_transactions_match_the_model(broker, program):
    run_program(broker, program, durable=False)


@pytest.mark.timeout(600)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=steps)
def test_durable_transactions_match_the_model_across_a_restart(broker, program):
    run_program(broker, program, durable=True)
