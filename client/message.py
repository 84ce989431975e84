"""Messages: build one and encode it once (its bytes are what a sender sends, as often as asked), or
decode received bytes.

``Message(body, subject=..., application_properties=..., durable=...)`` describes a message;
``encode()`` gives its AMQP 1.0 encoding (header, message-annotations, properties,
application-properties, one body section). ``Message.decode(data)`` reads one back; received messages
also keep their bytes in ``data``.

Bodies: bytes/bytearray/memoryview -> a data section; anything else (str, int, dict, list, None ...)
-> an amqp-value section; a list passed with ``sequence=True`` -> an amqp-sequence section.
"""
from cypid.pyx.codec import (
    Described,
    decode_at,
    encode,
    encode_header,
    scan_message,
    symbol,
    timestamp,
    uint,
    ulong,
)

HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES = 0x70, 0x71, 0x72, 0x73
APPLICATION_PROPERTIES, DATA, AMQP_SEQUENCE, AMQP_VALUE, FOOTER = 0x74, 0x75, 0x76, 0x77, 0x78
_SECTION_NAMES = {"amqp:data:binary": DATA, "amqp:amqp-sequence:list": AMQP_SEQUENCE,
                  "amqp:amqp-value:*": AMQP_VALUE, "amqp:footer:map": FOOTER}

# The properties section's fields, in the spec's order.
PROPERTY_FIELDS = ("message_id", "user_id", "to", "subject", "reply_to", "correlation_id", "content_type",
                   "content_encoding", "absolute_expiry_time", "creation_time", "group_id", "group_sequence",
                   "reply_to_group_id")


class Message:
    """One message. Attributes are plain fields; ``data`` holds the encoded bytes of a received one."""

    __slots__ = ("body", "durable", "priority", "ttl", "first_acquirer", "delivery_count",
                 "application_properties", "annotations", "delivery_annotations", "sequence",
                 "data", "delivery_id", "receiver") + PROPERTY_FIELDS

    def __init__(self, body=None, *, durable=False, priority=None, ttl=None, first_acquirer=False,
                 delivery_count=0, application_properties=None, annotations=None, sequence=False,
                 **properties):
        self.body = body
        self.durable = durable
        self.priority = priority
        self.ttl = ttl
        self.first_acquirer = first_acquirer
        self.delivery_count = delivery_count
        self.application_properties = application_properties
        self.annotations = annotations
        self.delivery_annotations = None
        self.sequence = sequence
        self.data = None
        self.delivery_id = None
        self.receiver = None
        for name in PROPERTY_FIELDS:
            setattr(self, name, properties.pop(name, None))
        if properties:
            raise TypeError("unknown message field(s): %s" % ", ".join(sorted(properties)))

    # -- encoding ------------------------------------------------------------------------------
    def encode(self):
        """The message's AMQP 1.0 encoding (bytes)."""
        parts = []
        prio = 4 if self.priority is None else self.priority
        ttl = self.ttl or 0
        if self.durable or prio != 4 or ttl or self.first_acquirer or self.delivery_count:
            parts.append(encode_header(bool(self.durable), prio, int(ttl), bool(self.first_acquirer),
                                       int(self.delivery_count)))
        if self.annotations:
            parts.append(encode(Described(ulong(MESSAGE_ANNOTATIONS),
                                          {_key(k): v for k, v in self.annotations.items()})))
        props = [getattr(self, name) for name in PROPERTY_FIELDS]
        if any(v is not None for v in props):
            if props[8] is not None:
                props[8] = timestamp(props[8])
            if props[9] is not None:
                props[9] = timestamp(props[9])
            if props[11] is not None:
                props[11] = uint(props[11])
            if props[6] is not None:
                props[6] = symbol(props[6])
            if props[7] is not None:
                props[7] = symbol(props[7])
            if isinstance(props[1], str):
                props[1] = props[1].encode()
            while props[-1] is None:
                props.pop()
            parts.append(encode(Described(ulong(PROPERTIES), props)))
        if self.application_properties:
            parts.append(encode(Described(ulong(APPLICATION_PROPERTIES),
                                          {str(k): v for k, v in self.application_properties.items()})))
        body = self.body
        if isinstance(body, (bytes, bytearray, memoryview)):
            parts.append(encode(Described(ulong(DATA), bytes(body))))
        elif self.sequence:
            parts.append(encode(Described(ulong(AMQP_SEQUENCE), list(body))))
        else:
            parts.append(encode(Described(ulong(AMQP_VALUE), body)))
        return b"".join(parts)

    # -- decoding ------------------------------------------------------------------------------
    @classmethod
    def decode(cls, data):
        """The Message encoded in ``data`` (bytes-like); ``DecodeError`` if it is malformed."""
        info = scan_message(data)
        m = cls.__new__(cls)
        data = info.data
        m.data = data
        m.durable = info.durable
        m.priority = info.priority
        m.ttl = info.ttl or None
        m.first_acquirer = info.first_acquirer
        m.delivery_count = info.delivery_count
        m.delivery_id = None
        m.receiver = None
        ma = info.message_annotations()
        m.annotations = {str(k): v for k, v in ma.items()} if ma else None
        da = info.delivery_annotations()
        m.delivery_annotations = {str(k): v for k, v in da.items()} if da else None
        ap = info.application_properties()
        m.application_properties = ap if ap else None
        props = info.properties() or []
        for i, name in enumerate(PROPERTY_FIELDS):
            setattr(m, name, props[i] if i < len(props) else None)
        m.body, m.sequence = _decode_body(data, info.body_offset)
        return m

    def __repr__(self):
        names = ("subject", "to", "reply_to", "message_id", "correlation_id")
        fields = ["%s=%r" % (name, getattr(self, name)) for name in names if getattr(self, name) is not None]
        if self.durable:
            fields.append("durable=True")
        if self.application_properties:
            fields.append("application_properties=%r" % (self.application_properties,))
        body = self.body
        text = repr(body if not isinstance(body, (bytes, str)) or len(body) <= 40 else body[:40])
        cut = isinstance(body, (bytes, str)) and len(body) > 40
        fields.append("body=%s%s" % (text, "..." if cut else ""))
        return "Message(%s)" % ", ".join(fields)


def _key(k):
    return k if not isinstance(k, str) or isinstance(k, symbol) else symbol(k)


def _decode_body(data, offset):
    """(body, is_sequence) from the body sections at ``offset``: data sections are joined into bytes,
    amqp-sequence sections into one list, an amqp-value gives its value."""
    chunks, seq, value, kind = [], [], None, None
    end = len(data)
    while offset < end:
        section, offset = decode_at(data, offset)
        code = getattr(section, "descriptor", None)
        code = _SECTION_NAMES.get(code, code)
        if code == DATA:
            kind = DATA
            chunks.append(section.value)
        elif code == AMQP_SEQUENCE:
            kind = AMQP_SEQUENCE
            seq.extend(section.value)
        elif code == AMQP_VALUE:
            kind = AMQP_VALUE
            value = section.value
        else:   # footer
            break
    if kind == DATA:
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), False
    if kind == AMQP_SEQUENCE:
        return seq, True
    return value, False


def encode_message(body=None, **fields):
    """``Message(body, **fields).encode()``: the bytes to hand to ``Sender.send``."""
    return Message(body, **fields).encode()


def decode_message(data):
    return Message.decode(data)


__all__ = ["Message", "encode_message", "decode_message", "PROPERTY_FIELDS"]
