"""The stream's messages: what a primary tells a backup, one AMQP message per operation.

A stream message is an ordinary AMQP message whose body is one amqp-value map: ``{"op": OP, ...}``;
the fields of each operation:

| op | fields | meaning |
|---|---|---|
| begin | queues, exchanges ({name: identity}) | a snapshot starts: nodes not named here are gone |
| exchange | name, uuid, props | an exchange exists (declare properties as a client gives them) |
| xdel | name | it was deleted |
| queue | name, uuid, props, level | a queue exists |
| qdel | name | it was deleted |
| bind / unbind | exchange, queue, key (, args) | a binding |
| enqb | qs (list), recs (binary) | messages queued on `all` queues (a snapshot's, or one loop turn's): the names of the queues, and one blob of records `u32 index into qs, u64 replication id, u32 length, the message's bytes`, little-endian (cypid.pyx.ha_stream packs and applies it) |
| deq | q, ids | messages left the queue |
| end | - | the snapshot is complete |
| members | members | the primary's membership (each backup learns its own status from it) |
"""
from cypid.pyx.codec import Described, decode_at, encode, scan_message, ulong

AMQP_VALUE = ulong(0x77)


def encode_op(op, **fields):
    fields["op"] = op
    return encode(Described(AMQP_VALUE, fields))


def decode_op(data):
    """(op, fields) of a stream message's bytes (a header section may come first)."""
    info = scan_message(data)
    value, _ = decode_at(data, info.body_offset)
    body = getattr(value, "value", None)
    if not isinstance(body, dict) or "op" not in body:
        raise ValueError("not an HA stream message")
    return str(body["op"]), body


__all__ = ["encode_op", "decode_op"]
