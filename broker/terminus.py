"""Source and target termini of an attach: parsed into named fields, and re-encoded for the reply."""
from cypid.pyx.codec import Array, Described, symbol, uint, ulong

from . import errors

SOURCE_CODES = (0x28, "amqp:source:list")
TARGET_CODES = (0x29, "amqp:target:list")
COORDINATOR_CODES = (0x30, "amqp:coordinator:list")

# Filter descriptors qpidd understands (amqp10-mapping.md section 6.3).
DIRECT_FILTER = (0x0000468C00000000, "apache.org:legacy-amqp-direct-binding:string")
TOPIC_FILTER = (0x0000468C00000001, "apache.org:legacy-amqp-topic-binding:string")
HEADERS_FILTER = (0x0000468C00000002, "apache.org:legacy-amqp-headers-binding:map")
NO_LOCAL_FILTER = (0x0000468C00000003, "apache.org:no-local-filter:list")
SELECTOR_FILTER = (0x0000468C00000004, "apache.org:selector-filter:string")


def symbols(value):
    """A capabilities field (one symbol, an array or a list of them) as a set of str."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset((str(value),))
    elements = getattr(value, "elements", value)
    return frozenset(str(v) for v in elements)


class Terminus:
    __slots__ = ("kind", "fields", "address", "durable", "expiry_policy", "timeout", "dynamic",
                 "properties", "distribution_mode", "filter", "capabilities", "coordinator")

    @classmethod
    def parse(cls, value):
        """A Terminus from an attach's source/target field (None stays None); a malformed one
        raises errors.AmqpDecodeError."""
        if value is None:
            return None
        try:
            return cls._parse(value)
        except (TypeError, ValueError, AttributeError) as e:
            raise errors.AmqpDecodeError("malformed terminus %.60r: %s" % (value, e)) from None

    @classmethod
    def _parse(cls, value):
        t = cls()
        descriptor = getattr(value, "descriptor", None)
        fields = list(getattr(value, "value", None) or [])
        t.coordinator = descriptor in COORDINATOR_CODES
        t.kind = "source" if descriptor in SOURCE_CODES else "target"
        t.fields = fields
        n = len(fields)

        def get(i, default=None):
            v = fields[i] if i < n else None
            return default if v is None else v

        t.address = get(0)
        if t.address is not None:
            t.address = str(t.address)
        t.durable = int(get(1, 0))
        t.expiry_policy = str(get(2, "session-end"))
        t.timeout = int(get(3, 0))
        t.dynamic = bool(get(4, False))
        props = get(5)
        t.properties = {str(k): v for k, v in props.items()} if isinstance(props, dict) else {}
        if t.kind == "source":
            mode = get(6)
            t.distribution_mode = str(mode) if mode is not None else None
            filt = get(7)
            t.filter = filt if isinstance(filt, dict) else {}
            t.capabilities = symbols(get(10))
        else:
            t.distribution_mode = None
            t.filter = {}
            t.capabilities = symbols(get(6))
        return t

    def encode(self, address=None, capabilities=None, distribution_mode=None, filter=None,
               properties=None):
        """This terminus as the broker answers it, with the given fields replaced; a source's
        filter map is ``filter`` (the filters applied), never the one asked for."""
        fields = list(self.fields)
        width = 11 if self.kind == "source" else 7
        fields += [None] * (width - len(fields))
        if address is not None:
            fields[0] = address
        if properties is not None:
            fields[5] = {symbol(k): v for k, v in properties.items()}
        if self.kind == "source":
            if distribution_mode is not None:
                fields[6] = symbol(distribution_mode)
            # Only the filters the broker applies are echoed (none unless given): a client must not
            # believe a selector or no-local is in force when it is not.
            fields[7] = filter or None
            if capabilities is not None:
                fields[10] = Array(0xA3, [symbol(c) for c in capabilities]) if capabilities else None
        elif capabilities is not None:
            fields[6] = Array(0xA3, [symbol(c) for c in capabilities]) if capabilities else None
        if fields[1] is not None:
            fields[1] = uint(fields[1])
        if fields[3] is not None:
            fields[3] = uint(fields[3])
        while fields and fields[-1] is None:
            fields.pop()
        code = 0x28 if self.kind == "source" else 0x29
        return Described(ulong(code), fields)

    def binding_filters(self):
        """(subject filter or None, headers filter map or None, {key: described filter} applied)."""
        subject = headers = None
        applied = {}
        for key, value in self.filter.items():
            descriptor = getattr(value, "descriptor", None)
            inner = getattr(value, "value", value)
            if descriptor in DIRECT_FILTER or descriptor in TOPIC_FILTER or \
                    (descriptor is None and isinstance(value, str)):
                if subject is None:
                    subject = str(inner)
                    applied[key] = value
            elif descriptor in HEADERS_FILTER and isinstance(inner, dict):
                if headers is None:
                    headers = {str(k): v for k, v in inner.items()}
                    applied[key] = value
        return subject, headers, applied
