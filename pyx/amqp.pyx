# cython: language_level=3
"""The AMQP 1.0 protocol table: performative, outcome and SASL codes, settle modes, every error
condition of the specification, and the builders of the values that carry them (error, outcomes).

Python code reads ``amqp.OPEN``, ``amqp.NOT_FOUND``, ``amqp.error_value(...)``; Cython code cimports
the enum in amqp.pxd (the same numbers: the Python names below are made from it).
"""
from cypid.pyx.values import Described, symbol, ubyte, ulong

# The codes of amqp.pxd, under the same names, for Python code.
CODES = {
    "OPEN": OPEN, "BEGIN": BEGIN, "ATTACH": ATTACH, "FLOW": FLOW, "TRANSFER": TRANSFER,
    "DISPOSITION": DISPOSITION, "DETACH": DETACH, "END": END, "CLOSE": CLOSE, "ERROR": ERROR,
    "RECEIVED": RECEIVED, "ACCEPTED": ACCEPTED, "REJECTED": REJECTED, "RELEASED": RELEASED,
    "MODIFIED": MODIFIED, "SOURCE": SOURCE, "TARGET": TARGET,
    "COORDINATOR": COORDINATOR, "DECLARE": DECLARE, "DISCHARGE": DISCHARGE, "DECLARED": DECLARED,
    "TRANSACTIONAL_STATE": TRANSACTIONAL_STATE,
    "SASL_MECHANISMS": SASL_MECHANISMS, "SASL_INIT": SASL_INIT, "SASL_CHALLENGE": SASL_CHALLENGE,
    "SASL_RESPONSE": SASL_RESPONSE, "SASL_OUTCOME": SASL_OUTCOME,
    "FRAME_AMQP": FRAME_AMQP, "FRAME_SASL": FRAME_SASL,
    "SND_UNSETTLED": SND_UNSETTLED, "SND_SETTLED": SND_SETTLED, "SND_MIXED": SND_MIXED,
    "RCV_FIRST": RCV_FIRST, "RCV_SECOND": RCV_SECOND,
}
#: performative code -> its name in the spec
PERFORMATIVE_NAMES = {OPEN: "open", BEGIN: "begin", ATTACH: "attach", FLOW: "flow", TRANSFER: "transfer",
                      DISPOSITION: "disposition", DETACH: "detach", END: "end", CLOSE: "close",
                      SASL_MECHANISMS: "sasl-mechanisms", SASL_INIT: "sasl-init",
                      SASL_CHALLENGE: "sasl-challenge", SASL_RESPONSE: "sasl-response",
                      SASL_OUTCOME: "sasl-outcome"}
#: outcome code -> name (what a sender counts)
OUTCOME_NAMES = {0: "settled", RECEIVED: "received", ACCEPTED: "accepted", REJECTED: "rejected",
                 RELEASED: "released", MODIFIED: "modified"}

# Error conditions (transport.xml amqp-error, connection-error, session-error, link-error;
# transactions.xml transaction-error).
CONDITIONS = {
    "INTERNAL_ERROR": "amqp:internal-error",
    "NOT_FOUND": "amqp:not-found",
    "UNAUTHORIZED_ACCESS": "amqp:unauthorized-access",
    "DECODE_ERROR": "amqp:decode-error",
    "RESOURCE_LIMIT_EXCEEDED": "amqp:resource-limit-exceeded",
    "NOT_ALLOWED": "amqp:not-allowed",
    "INVALID_FIELD": "amqp:invalid-field",
    "NOT_IMPLEMENTED": "amqp:not-implemented",
    "RESOURCE_LOCKED": "amqp:resource-locked",
    "PRECONDITION_FAILED": "amqp:precondition-failed",
    "RESOURCE_DELETED": "amqp:resource-deleted",
    "ILLEGAL_STATE": "amqp:illegal-state",
    "FRAME_SIZE_TOO_SMALL": "amqp:frame-size-too-small",
    "CONNECTION_FORCED": "amqp:connection:forced",
    "FRAMING_ERROR": "amqp:connection:framing-error",
    "CONNECTION_REDIRECT": "amqp:connection:redirect",
    "WINDOW_VIOLATION": "amqp:session:window-violation",
    "ERRANT_LINK": "amqp:session:errant-link",
    "HANDLE_IN_USE": "amqp:session:handle-in-use",
    "UNATTACHED_HANDLE": "amqp:session:unattached-handle",
    "DETACH_FORCED": "amqp:link:detach-forced",
    "TRANSFER_LIMIT_EXCEEDED": "amqp:link:transfer-limit-exceeded",
    "MESSAGE_SIZE_EXCEEDED": "amqp:link:message-size-exceeded",
    "LINK_REDIRECT": "amqp:link:redirect",
    "STOLEN": "amqp:link:stolen",
    "TRANSACTION_UNKNOWN_ID": "amqp:transaction:unknown-id",
    "TRANSACTION_ROLLBACK": "amqp:transaction:rollback",
    "TRANSACTION_TIMEOUT": "amqp:transaction:timeout",
}
# Set through the module dict: the enum names of amqp.pxd are C-level here (see codec.pyx).
globals().update(CODES)
globals().update(CONDITIONS)

#: the symbolic descriptors a peer may use instead of the codes, for the delivery states
_STATE_SYMBOLS = {"amqp:received:list": RECEIVED, "amqp:accepted:list": ACCEPTED,
                  "amqp:rejected:list": REJECTED, "amqp:released:list": RELEASED,
                  "amqp:modified:list": MODIFIED, "amqp:transactional-state:list": TRANSACTIONAL_STATE}


cpdef int outcome_code(object state) except -1:
    """The descriptor code of a delivery state value (ACCEPTED, REJECTED..., TRANSACTIONAL_STATE),
    0 for None or for a value that is not a known delivery state."""
    if state is None:
        return 0
    d = getattr(state, "descriptor", None)
    if isinstance(d, int):
        return d if RECEIVED <= d <= MODIFIED or d == TRANSACTIONAL_STATE else 0
    return _STATE_SYMBOLS.get(d, 0)


cpdef object error_value(object condition, object description=None, object info=None):
    """The ``amqp:error:list`` value for close/end/detach and the rejected outcome."""
    fields = [symbol(condition)]
    if description is not None or info is not None:
        fields.append(None if description is None else str(description))
    if info is not None:
        fields.append(info)
    return Described(ulong(ERROR), fields)


cpdef tuple error_from(object value):
    """(condition, description, info) of an ``amqp:error:list`` value, or None for none."""
    fields = getattr(value, "value", None)
    if not isinstance(fields, list) or not fields or fields[0] is None:
        return None
    return (str(fields[0]), "" if len(fields) < 2 or fields[1] is None else str(fields[1]),
            fields[2] if len(fields) > 2 else None)


ACCEPTED_STATE = Described(ulong(ACCEPTED), [])
RELEASED_STATE = Described(ulong(RELEASED), [])


def rejected(condition=None, description=None, info=None):
    """The rejected outcome, with an error when ``condition`` is given."""
    return Described(ulong(REJECTED), [error_value(condition, description, info)] if condition else [])


def modified(failed=True, undeliverable=False, annotations=None):
    """The modified outcome."""
    fields = [bool(failed), bool(undeliverable)]
    if annotations:
        fields.append(annotations)
    return Described(ulong(MODIFIED), fields)


def sasl_mechanisms_list(value):
    """The mechanism names (str) of a sasl-server-mechanisms field (a symbol or an array of them)."""
    items = getattr(value, "elements", None)
    if items is None:
        items = [] if value is None else [value]
    return [str(m) for m in items]
