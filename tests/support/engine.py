"""Driving cypid.pyx.engine without sockets: a handler that records what the engine tells it, and a
pump that moves bytes between two engines (or an engine and a proton Transport) until both are quiet."""
from cypid.pyx import amqp
from cypid.pyx.engine import Engine, Handler, LinkState


class Recorder(Handler):
    """Records every call as (name, args...); answers the peer's attaches and opens as told."""

    def __init__(self, accept_links=True, open_reply=True, credit=0, hold=False, sasl_users=None):
        self.events = []
        self.engine = None
        self.accept_links = accept_links
        self.open_reply = open_reply
        self.credit = credit          # granted to peer-attached receiving links
        self.hold = hold              # hold every incoming delivery (released by the test)
        self.sasl_users = sasl_users  # {user: password} for PLAIN
        self.messages = []            # (link, delivery, data)
        self.held = []
        self.outcomes = []            # (link, context, outcome, state)
        self.settled = []             # (link, count, outcome)
        self.writable = 0

    def names(self):
        return [e[0] for e in self.events]

    def on_sasl_init(self, mechanism, response, hostname):
        self.events.append(("sasl_init", mechanism))
        if mechanism == "PLAIN":
            parts = bytes(response or b"").split(b"\0")
            ok = len(parts) == 3 and (self.sasl_users or {}).get(parts[1].decode()) == parts[2].decode()
            return 0 if ok else 1
        return 0 if mechanism == "ANONYMOUS" else 1

    def on_sasl_mechanisms(self, offered):
        self.events.append(("sasl_mechanisms", offered))
        if self.sasl_users:
            user, password = next(iter(self.sasl_users.items()))
            return ("PLAIN", b"\0" + user.encode() + b"\0" + password.encode())
        return ("ANONYMOUS", None) if "ANONYMOUS" in offered else None

    def on_open(self):
        self.events.append(("open",))
        if self.open_reply and self.engine.server:
            self.engine.open("server")

    def on_close(self, error, by_peer):
        self.events.append(("close", error, by_peer))

    def on_begin(self, session):
        self.events.append(("begin", session))

    def on_end(self, session, error):
        self.events.append(("end", session, error))

    def on_attach(self, link):
        self.events.append(("attach", link))
        if link.state == LinkState.ATTACH_RCVD and self.accept_links:
            link.accept()
            if not link.is_sender and self.credit:
                link.flow(self.credit)

    def on_flow(self, link):
        self.events.append(("flow", link))

    def on_session_flow(self, session):
        self.events.append(("session_flow", session))

    def on_message(self, link, delivery, data):
        self.messages.append((link, delivery, data))
        if self.hold:
            self.held.append(delivery.hold())

    def on_messages(self, link):
        self.events.append(("messages", link))

    def on_outcome(self, link, context, outcome, state):
        self.outcomes.append((link, context, outcome, state))

    def on_settled(self, link, count, outcome, state):
        self.settled.append((link, count, outcome))

    def on_detach(self, link, error):
        self.events.append(("detach", link, error))

    def on_writable(self):
        self.writable += 1


def make_pair(client_kw=None, server_kw=None, client_handler=None, server_handler=None):
    """(client engine, its recorder, server engine, its recorder), opened (both opens exchanged)."""
    ch = client_handler or Recorder()
    sh = server_handler or Recorder()
    client = Engine(ch, container_id="client", **(client_kw or {}))
    server = Engine(sh, server=True, container_id="server", **(server_kw or {}))
    ch.engine, sh.engine = client, server
    client.start()
    server.start()
    client.open()
    pump(client, server)
    return client, ch, server, sh


def pump(a, b, rounds=1000):
    """Move bytes both ways until neither engine has anything to write; returns the bytes moved."""
    moved = 0
    for _ in range(rounds):
        x = a.take_output()
        y = b.take_output()
        if not x and not y:
            return moved
        if x and not b.finished:
            b.feed(x)
        if y and not a.finished:
            a.feed(y)
        moved += len(x) + len(y)
    raise AssertionError("engines still talking after %d rounds" % rounds)


def frame(channel, code, fields, payload=b""):
    """One raw AMQP frame (for a peer that breaks the rules on purpose)."""
    from cypid.pyx.codec import encode_frame
    return encode_frame(channel, code, fields, payload)


__all__ = ["Recorder", "amqp", "frame", "make_pair", "pump"]
