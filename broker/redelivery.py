"""A consumer gives a delivery back with the `modified` outcome (amqp10-mapping.md 6.1, qpidd's
Outgoing): the message goes back on its queue, and

- ``delivery-failed``: its delivery-count goes up (journalled for a durable message);
- ``undeliverable-here``: it is never offered to that link again (it stays for the other consumers);
- ``message-annotations``: merged over the message's own, so the next consumer sees them.

Annotations merged into a durable message live in memory: its journal record keeps the bytes it was
sent with, so after a restart it is delivered without them.
"""
from . import filters


def modified(link, queue, msg, state):
    """Apply a `modified` outcome (its ``state``: the engine's described list, or None) to ``msg``,
    acquired by ``link`` from ``queue``."""
    value = getattr(state, "value", None)
    if not isinstance(value, list):
        value = []
    failed = bool(value[0]) if len(value) > 0 else False
    here = bool(value[1]) if len(value) > 1 else False
    annotations = value[2] if len(value) > 2 else None
    broker = link.broker
    if isinstance(annotations, dict) and annotations:
        if msg.body is None and broker.nodes.store is not None:
            broker.nodes.store.encoded(queue, msg, keep=True)    # on disk: read back to rewrite
        if msg.body is not None:
            msg.annotate(annotations)
    if here:
        filters.refuse_here(link, queue, msg)
    queue.release(msg, count_failure=failed)
    if failed and msg.durable:
        broker.nodes.released(queue, msg)
