"""The qpidd daemon: read the options, start one Broker on one event loop, stop cleanly on a signal.

Two environment variables of cypid's own (qpidd has neither):

* ``CYPID_LOOP``: ``uvloop`` (the default) or ``asyncio`` (the standard library's loop); the test
  suite runs on both, as uvloop's own does. Any other value stops the broker with a message.
* ``CYPID_AUDIT=1``: write a leak audit line at start-up and at a clean shutdown (broker/audit.py).
"""
import asyncio
import os
import signal
import sys

from . import audit
from .broker import Broker
from .options import parse_options

LOOP_ENV = "CYPID_LOOP"
LOOPS = ("uvloop", "asyncio")
#: how long a clean shutdown waits for closed connections to be gone before the audit
AUDIT_SETTLE_SECONDS = 5.0


def _loop(name=None):
    """A new event loop of the kind ``name`` (default: CYPID_LOOP, else uvloop)."""
    name = (name or os.environ.get(LOOP_ENV) or "uvloop").strip().lower()
    if name not in LOOPS:
        raise SystemExit("%s=%r: the event loop must be one of %s" % (LOOP_ENV, name, ", ".join(LOOPS)))
    if name == "uvloop":
        try:
            import uvloop
            return uvloop.new_event_loop()
        except ImportError:   # pragma: no cover - uvloop is a dependency, asyncio is the fallback
            pass
    return asyncio.new_event_loop()


def _audit(broker, when):
    sys.stderr.write(audit.line(audit.census(broker, when)) + "\n")
    sys.stderr.flush()


async def _connections_gone(broker, timeout=AUDIT_SETTLE_SECONDS):
    """Wait (a few loop turns at least) until every closed connection has been told it is lost."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in range(3):
        await asyncio.sleep(0)
    while broker.connections and loop.time() < deadline:
        await asyncio.sleep(0.01)


def main(argv=None):
    options = parse_options(argv)
    from .logs import setup_logging
    log = setup_logging(options, "cypid.broker")
    if options.data_path:
        os.makedirs(options.data_path, exist_ok=True)
    loop = _loop()
    asyncio.set_event_loop(loop)
    auditing = audit.enabled()
    try:
        broker = Broker(options, loop, log)
    except ValueError as e:     # a bad security configuration (SASL, ACL): named, and no start
        log.critical("%s", e)
        loop.close()
        return 1
    stopping = asyncio.Event()
    broker.on_shutdown = stopping.set     # QMF broker.shutdown()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)

    async def run():
        try:
            await broker.start()
        except OSError as e:
            log.critical("Cannot listen on port %s: %s", options.port, e)
            return 1
        if auditing:    # the baseline: the store open, listening (the loop has its own descriptors)
            _audit(broker, "start")
        if options.pidfile:
            with open(options.pidfile, "w") as f:
                f.write("%d\n" % os.getpid())
        await stopping.wait()
        log.log(25, "Shut down")
        await broker.stop()
        if auditing:
            await _connections_gone(broker)
            if broker.management is not None:
                # what its next tick would do: management keeps closed sessions' and links' creation
                # times (qpid-tool listed them) until it prunes; not a leak, so not counted as one
                broker.management.prune()
            _audit(broker, "stop")
        return 0

    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
