"""AMQP 1.0 error conditions and the exceptions that carry them.

Every error the broker reports to a peer (detach/end/close ``error`` field, a ``rejected`` outcome)
is an :class:`AmqpError`: ``.condition`` is the condition symbol as a ``str`` (e.g.
``"amqp:not-found"``), ``.description`` the human text, ``.info`` an optional map. The engine turns
it into the ``error`` described list with :meth:`AmqpError.error_fields`.

The condition names are the spec's (transport.xml ``amqp-error``, ``connection-error``,
``session-error``, ``link-error``; transactions.xml ``transaction-error``); they live once, in the
engine's ``cypid.pyx.amqp``, and are re-exported here as module constants. Raise the subclass for a
condition (``NotFound("Node not found: q")``), or ``AmqpError(description, condition=...)`` /
:func:`error_for` for one known only at run time.
"""

from cypid.pyx.amqp import (  # noqa: F401 - the spec's conditions, kept once in the engine's amqp module
    INTERNAL_ERROR, NOT_FOUND, UNAUTHORIZED_ACCESS, DECODE_ERROR, RESOURCE_LIMIT_EXCEEDED, NOT_ALLOWED,
    INVALID_FIELD, NOT_IMPLEMENTED, RESOURCE_LOCKED, PRECONDITION_FAILED, RESOURCE_DELETED, ILLEGAL_STATE,
    FRAME_SIZE_TOO_SMALL, CONNECTION_FORCED, FRAMING_ERROR, CONNECTION_REDIRECT, WINDOW_VIOLATION,
    ERRANT_LINK, HANDLE_IN_USE, UNATTACHED_HANDLE, DETACH_FORCED, TRANSFER_LIMIT_EXCEEDED,
    MESSAGE_SIZE_EXCEEDED, LINK_REDIRECT, STOLEN, TRANSACTION_UNKNOWN_ID, TRANSACTION_ROLLBACK,
    TRANSACTION_TIMEOUT,
)
from cypid.pyx.amqp import CONDITIONS as _CONDITIONS

#: every condition of the spec, by value
CONDITIONS = frozenset(_CONDITIONS.values())


class AmqpError(Exception):
    """An error with an AMQP condition.

    ``AmqpError(description="", condition=None, info=None)``; a subclass fixes ``condition``
    (class attribute), the base class defaults to ``amqp:internal-error``. ``scope`` says which
    endpoint the condition belongs to when the spec ties it to one: ``"connection"``,
    ``"session"``, ``"link"`` or ``None`` (any: the engine decides, usually the link).
    """

    condition = INTERNAL_ERROR
    scope = None
    closes_link = False     # a producer's message refused this way also closes its link (qpidd's way)

    def __init__(self, description="", condition=None, info=None):
        super().__init__(description)
        if condition is not None:
            self.condition = str(condition)
        self.description = "" if description is None else str(description)
        self.info = info

    def error_fields(self):
        """``[condition, description, info]`` for the ``amqp:error:list`` (condition as plain str:
        the engine wraps it in a symbol); trailing empty fields dropped."""
        fields = [self.condition, self.description or None, self.info]
        while fields and fields[-1] is None:
            fields.pop()
        return fields

    def __str__(self):
        return f"{self.condition}: {self.description}" if self.description else self.condition

    def __repr__(self):
        return f"{type(self).__name__}({self.description!r}, condition={self.condition!r})"


# Generic conditions -------------------------------------------------------------------------
class InternalError(AmqpError):
    condition = INTERNAL_ERROR


class NotFound(AmqpError):
    condition = NOT_FOUND


class UnauthorizedAccess(AmqpError):
    condition = UNAUTHORIZED_ACCESS


class AmqpDecodeError(AmqpError):
    """``amqp:decode-error`` (named so as not to clash with cypid.pyx.codec.DecodeError)."""

    condition = DECODE_ERROR


class ResourceLimitExceeded(AmqpError):
    condition = RESOURCE_LIMIT_EXCEEDED


class NotAllowed(AmqpError):
    condition = NOT_ALLOWED


class InvalidField(AmqpError):
    condition = INVALID_FIELD


class InvalidArgument(InvalidField, ValueError):
    """A bad argument (queue/exchange/binding argument): ``amqp:invalid-field`` and a ValueError."""


class Unimplemented(AmqpError):
    """``amqp:not-implemented`` (named so as not to shadow the builtin NotImplementedError)."""

    condition = NOT_IMPLEMENTED


class ResourceLocked(AmqpError):
    condition = RESOURCE_LOCKED


class PreconditionFailed(AmqpError):
    condition = PRECONDITION_FAILED


class ResourceDeleted(AmqpError):
    condition = RESOURCE_DELETED


class IllegalState(AmqpError):
    condition = ILLEGAL_STATE


class FrameSizeTooSmall(AmqpError):
    condition = FRAME_SIZE_TOO_SMALL


#: the exception a node operation (declare/delete/bind) raises; any AmqpError qualifies
NodeError = AmqpError


# Connection ---------------------------------------------------------------------------------
class AmqpConnectionError(AmqpError):
    scope = "connection"


class ConnectionForced(AmqpConnectionError):
    condition = CONNECTION_FORCED


class FramingError(AmqpConnectionError):
    condition = FRAMING_ERROR


class ConnectionRedirect(AmqpConnectionError):
    condition = CONNECTION_REDIRECT


# Session ------------------------------------------------------------------------------------
class AmqpSessionError(AmqpError):
    scope = "session"


class WindowViolation(AmqpSessionError):
    condition = WINDOW_VIOLATION


class ErrantLink(AmqpSessionError):
    condition = ERRANT_LINK


class HandleInUse(AmqpSessionError):
    condition = HANDLE_IN_USE


class UnattachedHandle(AmqpSessionError):
    condition = UNATTACHED_HANDLE


# Link ---------------------------------------------------------------------------------------
class AmqpLinkError(AmqpError):
    scope = "link"


class DetachForced(AmqpLinkError):
    condition = DETACH_FORCED


class TransferLimitExceeded(AmqpLinkError):
    condition = TRANSFER_LIMIT_EXCEEDED


class MessageSizeExceeded(AmqpLinkError):
    condition = MESSAGE_SIZE_EXCEEDED


class LinkRedirect(AmqpLinkError):
    condition = LINK_REDIRECT


class Stolen(AmqpLinkError):
    condition = STOLEN


# Transactions -------------------------------------------------------------------------------
class TransactionError(AmqpError):
    pass


class TransactionUnknownId(TransactionError):
    condition = TRANSACTION_UNKNOWN_ID


class TransactionRollback(TransactionError):
    condition = TRANSACTION_ROLLBACK


class TransactionTimeout(TransactionError):
    condition = TRANSACTION_TIMEOUT


_BY_CONDITION = {}
for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, AmqpError) and "condition" in _cls.__dict__:
        if _cls is not AmqpError and _cls is not InvalidArgument:
            _BY_CONDITION.setdefault(_cls.condition, _cls)
del _cls


def error_for(condition, description="", info=None):
    """The AmqpError subclass instance for ``condition`` (a plain AmqpError for an unknown one)."""
    cls = _BY_CONDITION.get(str(condition))
    if cls is None:
        return AmqpError(description, condition=condition, info=info)
    return cls(description, info=info)
