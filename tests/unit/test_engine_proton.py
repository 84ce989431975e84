"""cypid.pyx.engine against python-qpid-proton's own engine (proton.Transport + Connection + Collector),
driven in memory without sockets: our client engine talks to a Proton server and our server engine to a
Proton client -- SASL, open, begin, attach, transfers both ways (single and multi-frame), ranged
dispositions, holds, rcv-settle-mode second, drain, and close."""
from cypid.client.message import Message, encode_message
from cypid.pyx import amqp
from cypid.pyx.codec import Described, ulong
from cypid.pyx.engine import Engine
from proton import Collector, Connection, Delivery, Event, Transport

from tests.support.engine import Recorder

TARGET = Described(ulong(0x29), ["q"])
SOURCE = Described(ulong(0x28), ["q"])


class ProtonPeer:
    """A Proton endpoint (client or server) and its event loop: answers opens, begins and attaches,
    grants ``credit`` to receivers, accepts (and settles) what it receives, keeps message bodies."""

    def __init__(self, server, credit=100, sasl=False, max_frame=None, rcv_second=False, settle=True):
        self.transport = Transport(Transport.SERVER if server else Transport.CLIENT)
        if max_frame:
            self.transport.max_frame_size = max_frame
        if sasl:
            s = self.transport.sasl()
            s.allowed_mechs("ANONYMOUS")
        self.conn = Connection()
        self.conn.container = "proton"
        self.collector = Collector()
        self.conn.collect(self.collector)
        self.transport.bind(self.conn)
        self.credit = credit
        self.settle = settle
        self.rcv_second = rcv_second
        self.bodies = []
        self.outcomes = []
        self.links = []
        self.remote_closed = False

    def output(self):
        out = b""
        while True:
            n = self.transport.pending()
            if n <= 0:
                return out
            out += self.transport.peek(n)
            self.transport.pop(n)

    def feed(self, data):
        while data:
            n = min(len(data), max(self.transport.capacity(), 1))
            self.transport.push(data[:n])
            data = data[n:]
            self.process()
        self.process()

    def process(self):
        while True:
            ev = self.collector.peek()
            if ev is None:
                return
            t = ev.type
            if t == Event.CONNECTION_REMOTE_OPEN and not self.conn.state & self.conn.LOCAL_ACTIVE:
                self.conn.open()
            elif t == Event.SESSION_REMOTE_OPEN and ev.session.state & ev.session.LOCAL_UNINIT:
                ev.session.open()
            elif t == Event.LINK_REMOTE_OPEN and ev.link.state & ev.link.LOCAL_UNINIT:
                link = ev.link
                link.source.copy(link.remote_source)
                link.target.copy(link.remote_target)
                if self.rcv_second and link.is_receiver:
                    link.rcv_settle_mode = link.RCV_SECOND
                link.open()
                self.links.append(link)
                if link.is_receiver and self.credit:
                    link.flow(self.credit)
            elif t == Event.DELIVERY:
                d = ev.delivery
                if d.link.is_receiver and d.readable and not d.partial:
                    self.bodies.append(d.link.recv(d.pending))
                    d.link.advance()
                    d.update(Delivery.ACCEPTED)
                    if self.settle and not self.rcv_second or self.rcv_second and d.remote_settled:
                        d.settle()
                elif d.link.is_sender and d.updated:
                    self.outcomes.append(d.remote_state)
                    d.settle()
            elif t == Event.CONNECTION_REMOTE_CLOSE:
                self.remote_closed = True
                self.conn.close()
            self.collector.pop()


def pump(engine, peer, rounds=500):
    for _ in range(rounds):
        x = engine.take_output()
        if x:
            peer.feed(x)
        else:
            peer.process()
        y = peer.output()
        if y and not engine.finished:
            engine.feed(y)
        if not x and not y:
            return
    raise AssertionError("still talking")


def _client(sasl=False, **kw):
    h = Recorder()
    e = Engine(h, container_id="cypid", sasl=sasl, **kw)
    h.engine = e
    e.start()
    e.open()
    return e, h


def test_our_client_sends_to_a_proton_server_batch_and_multi_frame():
    peer = ProtonPeer(server=True, credit=500, sasl=True)
    e, h = _client(sasl=True)
    pump(e, peer)
    assert e.opened and e.remote_container_id == "proton"
    sess = e.begin()
    link = sess.attach("snd", True, None, TARGET, snd_settle_mode=amqp.SND_UNSETTLED)
    pump(e, peer)
    assert link.credit == 500
    msg = encode_message(b"x" * 1000)
    assert link.send_batch(msg, 300) == 300
    big = encode_message(b"y" * 200000)                   # beyond proton's max-frame-size
    assert link.send(big, context="big") >= 0
    pump(e, peer)
    assert len(peer.bodies) == 301 and peer.bodies[-1] == big and peer.bodies[0] == msg
    assert sum(n for _, n, _ in h.settled) == 300
    assert h.outcomes and h.outcomes[0][1:3] == ("big", amqp.ACCEPTED)
    assert link.unsettled == 0 and sess.outstanding == 0
    e.close()
    pump(e, peer)
    assert e.finished and peer.remote_closed


def test_our_client_receives_from_a_proton_server():
    peer = ProtonPeer(server=True)
    e, h = _client(max_frame_size=1024)
    pump(e, peer)
    sess = e.begin()
    rcv = sess.attach("rcv", False, SOURCE, None, batch=True)
    pump(e, peer)
    snd = peer.links[0]
    rcv.flow(10)
    pump(e, peer)
    assert snd.credit == 10
    bodies = [encode_message(b"m%d" % i + b"." * (3000 if i == 2 else 0)) for i in range(5)]
    for i, b in enumerate(bodies):
        d = snd.delivery(b"tag%d" % i)
        snd.send(b)
        snd.advance()
    pump(e, peer)
    msgs, _ = rcv.take_messages()
    assert msgs == bodies
    assert len(peer.outcomes) == 5 and all(o == Delivery.ACCEPTED for o in peer.outcomes)
    assert rcv.credit == 5 and rcv.delivery_count == 5 and rcv.received == 5


def test_proton_client_sends_to_our_server_with_holds_and_rcv_second():
    sh = Recorder(credit=50, hold=True)
    s = Engine(sh, server=True, container_id="cypid", sasl_mechanisms=["ANONYMOUS"])
    sh.engine = s
    peer = ProtonPeer(server=False, sasl=True)
    c = peer.conn
    c.open()
    ssn = c.session()
    ssn.open()
    snd = ssn.sender("snd")
    snd.target.address = "q"
    snd.rcv_settle_mode = snd.RCV_SECOND
    snd.open()
    pump(s, peer)
    link = [ev[1] for ev in sh.events if ev[0] == "attach"][0]
    assert link.rcv_settle_mode == amqp.RCV_SECOND and snd.credit == 50
    for i in range(3):
        snd.delivery(b"t%d" % i)
        snd.send(encode_message(b"p%d" % i))
        snd.advance()
    pump(s, peer)
    assert len(sh.held) == 3 and peer.outcomes == []
    for d in sh.held:
        d.release()
    pump(s, peer)
    assert len(peer.outcomes) == 3 and all(o == Delivery.ACCEPTED for o in peer.outcomes)
    c.close()
    pump(s, peer)
    assert s.finished and sh.events[-1][0] == "close"


def test_our_server_sends_to_a_proton_receiver():
    sh = Recorder()
    s = Engine(sh, server=True, container_id="cypid")
    sh.engine = s
    peer = ProtonPeer(server=False)
    c = peer.conn
    c.open()
    ssn = c.session()
    ssn.open()
    rcv = ssn.receiver("rcv")
    rcv.source.address = "q"
    rcv.open()
    rcv.flow(20)
    pump(s, peer)
    link = [ev[1] for ev in sh.events if ev[0] == "attach"][0]
    assert link.is_sender and link.credit == 20
    for i in range(20):
        assert link.send(encode_message(b"n%d" % i), context=i) == i
    assert link.send(b"over") == -1                       # no credit left
    pump(s, peer)
    assert [Message.decode(b).body for b in peer.bodies] == [b"n%d" % i for i in range(20)]
    assert sorted(ctx for _, ctx, _, _ in sh.outcomes) == list(range(20))
    assert {o for _, _, o, _ in sh.outcomes} == {amqp.ACCEPTED}
    # Drain: the Proton receiver asks, our sender has nothing to send and uses the credit up.
    rcv.drain(7)
    pump(s, peer)
    assert link.drain and link.credit == 7
    link.drained()
    pump(s, peer)
    assert rcv.credit == 0 and not rcv.draining() and link.delivery_count == 27
