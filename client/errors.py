"""Errors the client raises: every one carries the AMQP condition and description the peer gave."""


class ClientError(Exception):
    """Base of the client's errors. ``condition`` is the AMQP error condition (a str, or None)."""

    def __init__(self, description="", condition=None, info=None):
        super().__init__(f"{condition}: {description}" if condition else description)
        self.condition = condition
        self.description = description
        self.info = info


class ConnectionClosed(ClientError):
    """The connection is gone: closed by the peer (with its error, if any), lost, or closed here."""


class AuthenticationError(ConnectionClosed):
    """SASL failed: no mechanism in common, or the peer refused the credentials."""


class SessionEnded(ClientError):
    """The session was ended (by the peer, with its error, or here)."""


class LinkDetached(ClientError):
    """The link was detached: an attach refused by the peer (``amqp:not-found`` ...), or closed later."""


class DeliveryFailed(ClientError):
    """Deliveries came back rejected, released or modified. ``counts`` maps outcome -> number."""

    def __init__(self, description="", condition=None, info=None, counts=None):
        super().__init__(description, condition, info)
        self.counts = dict(counts or {})


def error_from(value):
    """(condition, description, info) from an AMQP error composite (a described list), or Nones."""
    fields = getattr(value, "value", None)
    if not isinstance(fields, list):
        return None, "", None
    condition = str(fields[0]) if fields and fields[0] is not None else None
    description = fields[1] if len(fields) > 1 and fields[1] is not None else ""
    info = fields[2] if len(fields) > 2 else None
    return condition, str(description), info


__all__ = ["ClientError", "ConnectionClosed", "AuthenticationError", "SessionEnded", "LinkDetached",
           "DeliveryFailed", "error_from"]
