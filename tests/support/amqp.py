"""python-qpid-proton helpers for tests: link options for qpidd's capabilities, node properties and
filters, and small send/receive conveniences on BlockingConnection.
"""
from proton import Data, Described, Message, symbol, ulong
from proton.reactor import LinkOption

DIRECT_FILTER = ulong(0x0000468C00000000)
TOPIC_FILTER = ulong(0x0000468C00000001)
HEADERS_FILTER = ulong(0x0000468C00000002)


def _terminus(link):
    return link.target if link.is_sender else link.source


class Capabilities(LinkOption):
    """Put symbols in the link's terminus capabilities (queue, topic, create-on-demand, shared ...)."""

    def __init__(self, *caps):
        self.caps = caps

    def apply(self, link):
        data = _terminus(link).capabilities
        data.put_array(False, Data.SYMBOL)
        data.enter()
        for cap in self.caps:
            data.put_symbol(cap)
        data.exit()


class NodeProperties(LinkOption):
    """Set the terminus (dynamic-node-)properties, as qpid::messaging's create/node options do."""

    def __init__(self, **props):
        self.props = {symbol(k.replace("_", "-") if not k.startswith("qpid") else k): v
                      for k, v in props.items()}

    def apply(self, link):
        _terminus(link).properties.put_dict(self.props)


class QpidProperties(LinkOption):
    """Node properties given with their exact names (for qpid.* keys with dots)."""

    def __init__(self, props):
        self.props = {symbol(k): v for k, v in props.items()}

    def apply(self, link):
        _terminus(link).properties.put_dict(self.props)


class CreateQueue(LinkOption):
    """create-on-demand a queue, with optional node properties."""

    def __init__(self, props=None):
        self.props = props or {}

    def apply(self, link):
        Capabilities("queue", "create-on-demand").apply(link)
        if self.props:
            QpidProperties(self.props).apply(link)


class CreateExchange(LinkOption):
    def __init__(self, exchange_type="topic", props=None):
        self.props = dict(props or {}, **{"exchange-type": exchange_type})

    def apply(self, link):
        Capabilities("topic", "create-on-demand").apply(link)
        QpidProperties(self.props).apply(link)


class BindingFilter(LinkOption):
    """A legacy-amqp-*-binding filter on a receiver's source."""

    def __init__(self, descriptor, value, key="binding"):
        self.filter = {symbol(key): Described(descriptor, value)}

    def apply(self, link):
        link.source.filter.put_dict(self.filter)


class SettleMode(LinkOption):
    def __init__(self, snd_settle_mode):
        self.mode = snd_settle_mode

    def apply(self, link):
        link.snd_settle_mode = self.mode


def send_all(conn, address, bodies, options=None, **props):
    sender = conn.create_sender(address, options=options)
    for body in bodies:
        sender.send(Message(body=body, **props))
    sender.close()


def receive_all(conn, address, count, timeout=10, options=None, accept=True):
    receiver = conn.create_receiver(address, credit=max(count, 1), options=options)
    out = []
    for _ in range(count):
        msg = receiver.receive(timeout=timeout)
        out.append(msg)
        if accept:
            receiver.accept()
    receiver.close()
    return out


def qmf_text(value):
    """A received QMF value with AMQP binary as text. qpidd (and cypid, as qpidd does) sends QMF
    strings as binary, which python-qpid-proton gives as a view into memory it reuses for the next
    message: a console converts each message as it arrives."""
    if isinstance(value, (memoryview, bytes)):
        return bytes(value).decode("utf-8")
    if isinstance(value, dict):
        return {qmf_text(k): qmf_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [qmf_text(v) for v in value]
    return value
