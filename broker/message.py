"""A message as the broker holds it: its encoded bytes plus the few fields routing needs.

The broker runs on cypid.pyx.message.Message (C fields, this interface); this pure-Python class is
its reference, kept so tests run both and compare (tests/unit/test_pyx_message.py).

The bytes kept are the message without its header and delivery-annotations (those belong to one hop);
the header is rebuilt for each delivery, so delivery-count and first-acquirer are per delivery.
"""
import time

from cypid.pyx.codec import encode_header, scan_message

_FIRST_HEADERS = {}   # (durable, priority) -> header section of a first delivery without ttl


class Message:
    __slots__ = ("body", "durable", "priority", "ttl", "expires", "to", "subject", "user_id", "size", "_info",
                 "delivery_count", "acquired_before", "seq")

    def __init__(self, data):
        info = scan_message(data)
        off = info.bare_offset
        self.body = data if off == 0 else data[off:]
        self._info = info
        self.durable = info.durable
        self.priority = info.priority
        self.ttl = info.ttl
        # Absolute expiry on the monotonic clock; 0 means never.
        self.expires = time.monotonic() + info.ttl / 1000.0 if info.ttl else 0.0
        self.to = info.to
        self.subject = info.subject
        self.user_id = info.user_id
        self.size = len(data)
        self.delivery_count = info.delivery_count
        self.acquired_before = not info.first_acquirer if info.delivery_count else False
        self.seq = 0

    def copy(self):
        """The same message for another queue: routed copies share the bytes, not the delivery state."""
        other = Message.__new__(Message)
        for name in Message.__slots__:
            setattr(other, name, getattr(self, name))
        return other

    def application_properties(self):
        return self._info.application_properties()

    def encoded(self):
        """The bytes to send to a consumer: a fresh header section, then the kept bytes."""
        ttl = self.ttl
        if ttl and self.expires:
            ttl = max(1, int((self.expires - time.monotonic()) * 1000))
        if not ttl and not self.delivery_count:
            if self.acquired_before:
                if not self.durable and self.priority == 4:
                    return self.body      # every header field at its default: no header section
            else:
                # A first delivery says first-acquirer=true (its default is false), as qpidd does.
                key = (self.durable, self.priority)
                header = _FIRST_HEADERS.get(key)
                if header is None:
                    header = _FIRST_HEADERS[key] = encode_header(self.durable, self.priority, 0, True, 0)
                return header + self.body
        return encode_header(self.durable, self.priority, ttl, not self.acquired_before,
                             self.delivery_count) + self.body

    def expired(self, now):
        return self.expires != 0.0 and now >= self.expires

    def annotate(self, annotations):
        """Merge ``annotations`` over the message-annotations (added if there are none); changes
        ``body`` and ``size``."""
        body = scan_message(self.body).rebuild(b"", annotations)
        self.size += len(body) - len(self.body)
        self.body = body
        self._info = scan_message(body)
