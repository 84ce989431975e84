# cython: language_level=3
"""Checks of incoming performative fields before the engine reads them (the transfer's are read in C
by engine_core._parse_transfer; every other performative and the SASL frames come through here).

The codec decodes any well-formed described list; whether its fields have the types the spec gives
them (transport.xml, security.xml) is checked here, so that the engine can index and compare them
without guarding every access. A violation raises ``ProtocolViolation(amqp:decode-error)`` (the
performative does not decode into a valid one): the engine closes the connection with it (during SASL:
outcome sys-perm).

Numbers are accepted in any integer encoding (a client that sends a handle as a ulong is not refused)
as long as they fit the field's type; booleans are not numbers here.
"""
from cypid.pyx.amqp import (ATTACH, BEGIN, CLOSE, DECODE_ERROR, DETACH, DISPOSITION, END, FLOW, OPEN,
                            PERFORMATIVE_NAMES as NAMES, SASL_INIT, SASL_RESPONSE, TRANSFER)
from cypid.pyx.engine_core import ProtocolViolation
from cypid.pyx.values import Described, symbol, ubyte, uint, ushort


def _uint(limit):
    def check(v):
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= limit
    check.kind = "uint" if limit == 0xFFFFFFFF else "ushort" if limit == 0xFFFF else "ubyte"
    return check


def _kind(kind, test):
    test.kind = kind
    return test


UINT = _uint(0xFFFFFFFF)
USHORT = _uint(0xFFFF)
UBYTE = _uint(0xFF)
BOOL = _kind("boolean", lambda v: isinstance(v, bool))
STRING = _kind("string", lambda v: isinstance(v, str))
BINARY = _kind("binary", lambda v: isinstance(v, bytes))
MAP = _kind("map", lambda v: isinstance(v, dict))
DESCRIBED = _kind("described", lambda v: hasattr(v, "descriptor") and hasattr(v, "value"))
ANY = None

# (name, check, mandatory) for the leading fields the broker reads; later fields are not checked.
SPECS = {
    OPEN: (("container-id", STRING, True), ("hostname", STRING, False), ("max-frame-size", UINT, False),
           ("channel-max", USHORT, False), ("idle-time-out", UINT, False), ("outgoing-locales", ANY, False),
           ("incoming-locales", ANY, False), ("offered-capabilities", ANY, False),
           ("desired-capabilities", ANY, False), ("properties", MAP, False)),
    BEGIN: (("remote-channel", USHORT, False), ("next-outgoing-id", UINT, True),
            ("incoming-window", UINT, True), ("outgoing-window", UINT, True), ("handle-max", UINT, False)),
    ATTACH: (("name", STRING, True), ("handle", UINT, True), ("role", BOOL, True),
             ("snd-settle-mode", UBYTE, False), ("rcv-settle-mode", UBYTE, False),
             ("source", DESCRIBED, False), ("target", DESCRIBED, False), ("unsettled", MAP, False),
             ("incomplete-unsettled", BOOL, False), ("initial-delivery-count", UINT, False)),
    FLOW: (("next-incoming-id", UINT, False), ("incoming-window", UINT, True),
           ("next-outgoing-id", UINT, True), ("outgoing-window", UINT, True), ("handle", UINT, False),
           ("delivery-count", UINT, False), ("link-credit", UINT, False), ("available", UINT, False),
           ("drain", BOOL, False), ("echo", BOOL, False)),
    TRANSFER: (("handle", UINT, True), ("delivery-id", UINT, False), ("delivery-tag", BINARY, False),
               ("message-format", UINT, False), ("settled", BOOL, False), ("more", BOOL, False),
               ("rcv-settle-mode", UBYTE, False), ("state", DESCRIBED, False), ("resume", BOOL, False),
               ("aborted", BOOL, False), ("batchable", BOOL, False)),
    DISPOSITION: (("role", BOOL, True), ("first", UINT, True), ("last", UINT, False),
                  ("settled", BOOL, False), ("state", DESCRIBED, False), ("batchable", BOOL, False)),
    DETACH: (("handle", UINT, True), ("closed", BOOL, False), ("error", DESCRIBED, False)),
    END: (("error", DESCRIBED, False),),
    CLOSE: (("error", DESCRIBED, False),),
    SASL_INIT: (("mechanism", STRING, True), ("initial-response", BINARY, False),
                ("hostname", STRING, False)),
    SASL_RESPONSE: (("response", BINARY, True),),
}


# The fast path: the exact classes the codec gives for well-typed fields, and the mandatory indexes.
_EXACT = {UINT: (uint,), USHORT: (ushort, uint), UBYTE: (ubyte,), BOOL: (bool,), STRING: (str, symbol),
          BINARY: (bytes,), MAP: (dict,), DESCRIBED: (Described,)}
FAST = {code: (tuple(frozenset(_EXACT[c] + (type(None),)) if c is not None else None for _, c, _ in spec),
               tuple(i for i, (_, _, m) in enumerate(spec) if m))
        for code, spec in SPECS.items()}


cpdef check_fields(int code, list fields):
    """Raise ProtocolViolation(amqp:decode-error) if a field the broker reads is missing (mandatory) or of the wrong type."""
    fast = FAST.get(code)
    if fast is None:
        return
    types, mandatory = fast
    n = len(fields)
    for i in mandatory:
        if i >= n or fields[i] is None:
            break
    else:
        for v, t in zip(fields, types):
            if t is not None and type(v) not in t:
                break
        else:
            return
    _check_slow(code, fields, n)


def _check_slow(code, fields, n):
    spec = SPECS[code]
    for i, (name, check, mandatory) in enumerate(spec):
        v = fields[i] if i < n else None
        if v is None:
            if mandatory:
                raise ProtocolViolation(DECODE_ERROR, "%s: mandatory field %s is missing" % (NAMES[code], name))
            continue
        if check is not None and not check(v):
            raise ProtocolViolation(DECODE_ERROR, "%s: field %s must be a %s, not %s"
                                    % (NAMES[code], name, check.kind, _short(v)))


def _short(v, limit=40):
    text = repr(v)
    return text if len(text) <= limit else text[:limit] + "..."
