"""Sources and targets for attach: an address plus qpidd's node options.

``node`` says what the address names: ``"queue"`` or ``"topic"`` (an exchange) become the terminus
capabilities qpidd reads; ``create=True`` adds ``create-on-demand`` (the broker creates the node,
with ``properties`` as its node properties: ``durable``, ``auto-delete``, ``exchange-type``,
``qpid.max_count`` ...). On a source, ``subject`` binds a topic/direct subscription with a
legacy-amqp-topic-binding filter, ``selector`` adds a JMS selector and ``browse`` asks for
distribution-mode copy.
"""
from cypid.pyx.codec import Array, Described, symbol, uint, ulong

SOURCE, TARGET = 0x28, 0x29
DIRECT_FILTER = ulong(0x0000468C00000000)
TOPIC_FILTER = ulong(0x0000468C00000001)
HEADERS_FILTER = ulong(0x0000468C00000002)
SELECTOR_FILTER = ulong(0x0000468C00000004)
EXPIRY_POLICIES = ("link-detach", "session-end", "connection-close", "never")


def capabilities(node=None, create=False, extra=()):
    caps = []
    if node is not None:
        if node not in ("queue", "topic"):
            raise ValueError("node must be 'queue' or 'topic', not %r" % (node,))
        caps.append(node)
    if create:
        caps.append("create-on-demand")
    caps.extend(c for c in extra if c not in caps)
    return Array(0xA3, [symbol(c) for c in caps]) if caps else None


def _common(address, durable, expiry_policy, timeout, dynamic, properties):
    if expiry_policy is not None and expiry_policy not in EXPIRY_POLICIES:
        raise ValueError("expiry_policy must be one of %s" % ", ".join(EXPIRY_POLICIES))
    return [
        address,
        uint(int(durable)) if durable else None,
        symbol(expiry_policy) if expiry_policy else None,
        uint(timeout) if timeout else None,
        True if dynamic else None,
        {symbol(k): v for k, v in properties.items()} if properties else None,
    ]


def _trim(fields):
    while fields and fields[-1] is None:
        fields.pop()
    return fields


def make_source(address=None, *, node=None, create=False, properties=None, durable=0, expiry_policy=None,
                timeout=0, dynamic=False, browse=False, subject=None, selector=None, filter=None,
                capabilities_=()):
    """A source terminus (Described) for a receiver's attach."""
    filters = dict(filter or {})
    if subject is not None:
        filters[symbol("subject-filter")] = Described(TOPIC_FILTER, subject)
    if selector is not None:
        filters[symbol("selector-filter")] = Described(SELECTOR_FILTER, selector)
    fields = _common(address, durable, expiry_policy, timeout, dynamic, properties)
    fields += [symbol("copy") if browse else None, filters or None, None, None,
               capabilities(node, create, capabilities_)]
    return Described(ulong(SOURCE), _trim(fields))


def make_target(address=None, *, node=None, create=False, properties=None, durable=0, expiry_policy=None,
                timeout=0, dynamic=False, capabilities_=()):
    """A target terminus (Described) for a sender's attach; ``address=None`` is the anonymous relay."""
    fields = _common(address, durable, expiry_policy, timeout, dynamic, properties)
    fields.append(capabilities(node, create, capabilities_))
    return Described(ulong(TARGET), _trim(fields))


def terminus_address(value):
    """The address of a terminus as the peer answered it (None if absent)."""
    fields = getattr(value, "value", None)
    if isinstance(fields, list) and fields:
        return fields[0]
    return None


__all__ = ["make_source", "make_target", "capabilities", "terminus_address", "TOPIC_FILTER", "DIRECT_FILTER",
           "SELECTOR_FILTER", "HEADERS_FILTER"]
