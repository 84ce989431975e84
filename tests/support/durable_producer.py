"""A durable-message producer process for crash tests (python-qpid-proton, not our client).

``python -m tests.support.durable_producer URL QUEUE PRODUCER ACKFILE [WINDOW] [BODY_SIZE]``

It waits for commands on stdin, one per line:

- ``go``: connect to URL (no reconnect) and send durable messages to QUEUE as fast as the link's
  credit allows, with up to WINDOW sends unsettled at once. Each message carries the
  application properties ``producer`` (PRODUCER) and ``n`` (1, 2, 3, ... continuing across runs).
  When the broker's ``accepted`` for message n arrives, the line ``n`` is appended to ACKFILE and
  flushed at once, so that whatever the file holds was acknowledged before anyone reads it.
  Other outcomes are written as ``rejected n`` / ``released n``. When the connection goes (the
  broker was killed), the process prints ``stopped NEXT`` on stdout and waits for the next command.
- ``quit`` or end of input: exit.

``python -m tests.support.durable_producer --consume URL QUEUE ACKFILE``: the same commands, but
``go`` receives from QUEUE (credit 200) and, for each message, appends ``PRODUCER n`` to ACKFILE
(flushed) before accepting it, so the file holds every message the consumer saw.
"""
import sys

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container


class _OneRun(MessagingHandler):
    """Ends its container's run when the connection goes (the broker was killed)."""

    def on_transport_error(self, event):
        event.container.stop()

    def on_connection_error(self, event):
        event.container.stop()

    def on_disconnected(self, event):
        event.container.stop()


class Producer(_OneRun):
    def __init__(self, url, queue, producer, ackfile, window, body, next_n):
        super().__init__(auto_settle=True)
        self.url = url
        self.queue = queue
        self.producer = producer
        self.ackfile = ackfile
        self.window = window
        self.body = body
        self.next_n = next_n
        self.inflight = {}
        self.sender = None

    def on_start(self, event):
        conn = event.container.connect(self.url, reconnect=False)
        event.container.create_sender(conn, self.queue)

    def on_sendable(self, event):
        self.sender = event.sender
        self._pump()

    def _pump(self):
        sender = self.sender
        while sender is not None and sender.credit and len(self.inflight) < self.window:
            n = self.next_n
            self.next_n += 1
            msg = Message(body=self.body, durable=True, properties={"producer": self.producer, "n": n})
            self.inflight[sender.send(msg)] = n

    def _settled(self, event, what):
        n = self.inflight.pop(event.delivery, None)
        if n is None:
            return
        self.ackfile.write("%d\n" % n if what is None else "%s %d\n" % (what, n))
        self.ackfile.flush()
        self._pump()

    def on_accepted(self, event):
        self._settled(event, None)

    def on_rejected(self, event):
        self._settled(event, "rejected")

    def on_released(self, event):
        self._settled(event, "released")


class Consumer(_OneRun):
    def __init__(self, url, queue, seenfile):
        super().__init__(prefetch=200, auto_accept=False)
        self.url = url
        self.queue = queue
        self.seenfile = seenfile

    def on_start(self, event):
        conn = event.container.connect(self.url, reconnect=False)
        event.container.create_receiver(conn, self.queue)

    def on_message(self, event):
        props = event.message.properties
        self.seenfile.write("%s %d\n" % (props["producer"], props["n"]))
        self.seenfile.flush()
        self.accept(event.delivery)


def serve(run):
    """Read commands from stdin; on ``go`` call run() (one connection, until it goes) and print
    what it returns after ``stopped``."""
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        if cmd != "go":
            continue
        try:
            tail = run()
        except Exception as e:       # the broker vanished mid-call: this run is over
            print("error %s" % e, file=sys.stderr, flush=True)
            tail = getattr(run, "next_n", "")
        print(("stopped %s" % tail).strip(), flush=True)
    return 0


def main(argv):
    if argv and argv[0] == "--consume":
        url, queue, path = argv[1:4]
        with open(path, "a") as seenfile:
            return serve(lambda: Container(Consumer(url, queue, seenfile)).run())
    url, queue, producer, path = argv[:4]
    window = int(argv[4]) if len(argv) > 4 else 100
    size = int(argv[5]) if len(argv) > 5 else 256
    body = "x" * size

    def run():
        handler = Producer(url, queue, producer, ackfile, window, body, run.next_n)
        try:
            Container(handler).run()
        finally:
            run.next_n = handler.next_n
        return run.next_n

    run.next_n = 1

    with open(path, "a") as ackfile:
        return serve(run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
