# cython: language_level=3
"""cypid.pyx.amqp: the AMQP 1.0 protocol constants, once (performatives, outcomes, SASL, settle modes).

The Python names (``amqp.OPEN``, ``amqp.ACCEPTED``, the condition strings, the value builders) are in
amqp.pyx; Cython code cimports the enum below.  Nothing else in cypid may keep a copy of these codes.
"""

cdef enum:
    # Performatives (transport.xml), descriptor codes.
    OPEN = 0x10
    BEGIN = 0x11
    ATTACH = 0x12
    FLOW = 0x13
    TRANSFER = 0x14
    DISPOSITION = 0x15
    DETACH = 0x16
    END = 0x17
    CLOSE = 0x18
    ERROR = 0x1d
    # Delivery states (messaging.xml).
    RECEIVED = 0x23
    ACCEPTED = 0x24
    REJECTED = 0x25
    RELEASED = 0x26
    MODIFIED = 0x27
    SOURCE = 0x28
    TARGET = 0x29
    # Transactions (transactions.xml).
    COORDINATOR = 0x30
    DECLARE = 0x31
    DISCHARGE = 0x32
    DECLARED = 0x33
    TRANSACTIONAL_STATE = 0x34
    # SASL (security.xml).
    SASL_MECHANISMS = 0x40
    SASL_INIT = 0x41
    SASL_CHALLENGE = 0x42
    SASL_RESPONSE = 0x43
    SASL_OUTCOME = 0x44
    # Frame types.
    FRAME_AMQP = 0
    FRAME_SASL = 1
    # Settle modes.
    SND_UNSETTLED = 0
    SND_SETTLED = 1
    SND_MIXED = 2
    RCV_FIRST = 0
    RCV_SECOND = 1


cpdef int outcome_code(object state) except -1      # descriptor code of a delivery state, 0 if none
cpdef object error_value(object condition, object description=*, object info=*)
cpdef tuple error_from(object value)                  # (condition, description, info) | None
