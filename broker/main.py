"""The qpidd daemon: read the options, start one Broker on one event loop, stop cleanly on a signal.

Two environment variables of cypid's own (qpidd has neither):

* ``CYPID_LOOP``: ``uvloop`` (the default) or ``asyncio`` (the standard library's loop); the test
  suite runs on both, as uvloop's own does. Any other value stops the broker with a message.
* ``CYPID_AUDIT=1``: write a leak audit line at start-up and at a clean shutdown (broker/audit.py).
"""
import asyncio
import gc
import os
import signal
import sys

from . import audit, daemon
from .broker import Broker
from .options import parse_options
from .options_inert import notice_lines

LOOP_ENV = "CYPID_LOOP"
LOOPS = ("uvloop", "asyncio")
#: how long a clean shutdown waits for closed connections to be gone before the audit
AUDIT_SETTLE_SECONDS = 5.0
#: the cyclic GC's first threshold once the broker serves (CPython's default is 700): see settle_gc
GC_YOUNG_THRESHOLD = 50000


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


def settle_gc():
    """Once the broker serves: what start-up made (modules, options, the recovered messages) is
    frozen out of the cyclic GC's generations, and a young collection waits for 50,000 new objects
    instead of 700. Each message in flight holds a few GC-tracked objects (the message, its delivery,
    the hold on its settlement) until its journal sync comes back, a few hundred messages at a
    time: at 700 every young collection traversed only live objects and promoted them, to be
    traversed again by the older generations (about a tenth of the broker's CPU per durable message).
    Garbage cycles are still collected, just less often. The daemon's process only (not a Broker
    made in a test process)."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


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


def _startup_error(e):
    """One line naming what stopped start-up (an OSError names its file and the system's reason)."""
    if isinstance(e, OSError) and e.filename is not None:
        return "%s: %s" % (e.filename, e.strerror or e)
    return str(e) or e.__class__.__name__


def _prepare_data_dir(path):
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(20, "--data-dir is not a directory", path)
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(13, "--data-dir is not writable", path)


def main(argv=None):
    options = parse_options(argv)
    if options.check or options.quit or options.kill:
        return daemon.control(options)
    from .logs import setup_logging
    log = setup_logging(options, "cypid.broker")
    for line in notice_lines(options.inert):
        log.log(25, "%s", line)
    if options.worker_threads is not None:
        log.log(25, "--worker-threads has no effect in cypid: it runs one event loop")
    detached = None
    if options.daemon:
        if not options.log_to_file:
            log.log(25, "--daemon without --log-to-file: the log is discarded once the daemon listens")
        detached = daemon.detach(options)
    try:
        return _run(options, log, detached)
    except Exception as e:     # pragma: no cover - a start-up failure not foreseen below: one line
        log.critical("Start-up failed: %s", _startup_error(e))
        if detached is not None:
            detached.failed(_startup_error(e))
        return 1


def _run(options, log, detached):
    def fail(text):
        log.critical("%s", text)
        if detached is not None:
            detached.failed(text)
        return 1

    if options.data_path:
        try:
            _prepare_data_dir(options.data_path)
        except OSError as e:
            return fail("Cannot use the data directory: %s" % _startup_error(e))
    loop = _loop()
    asyncio.set_event_loop(loop)
    auditing = audit.enabled()
    try:
        broker = Broker(options, loop, log)
    except ValueError as e:     # a bad security configuration (SASL, ACL): named, and no start
        loop.close()
        return fail(str(e))
    except OSError as e:
        loop.close()
        return fail("Start-up failed: %s" % _startup_error(e))
    stopping = asyncio.Event()
    broker.on_shutdown = stopping.set     # QMF broker.shutdown()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)

    async def run():
        try:
            await broker.start()
        except OSError as e:
            if e.filename is None:
                return fail("Cannot listen on port %s: %s" % (options.port, e))
            return fail("Start-up failed: %s" % _startup_error(e))
        settle_gc()
        if auditing:    # the baseline: the store open, listening (the loop has its own descriptors)
            await audit.prime_loop(loop)
            _audit(broker, "start")
        pid_file = daemon.pid_path(options, broker.port) if (options.daemon or options.pid_dir) else None
        try:
            for path in (options.pidfile, pid_file):
                if path:
                    daemon.write_pid_file(path)
        except OSError as e:
            await broker.stop()
            return fail("Cannot write the pid file: %s" % _startup_error(e))
        if detached is not None:
            detached.ready(broker.port)
        daemon.notify_systemd("READY=1\nMAINPID=%d" % os.getpid())
        await stopping.wait()
        log.log(25, "Shut down")
        daemon.notify_systemd("STOPPING=1")
        await broker.stop()
        for path in (options.pidfile, pid_file):
            daemon.remove_pid_file(path)
        if auditing:
            await _connections_gone(broker)
            if broker.management is not None:
                # what its next tick would do: management keeps closed sessions' and links' creation
                # times (qpid-tool listed them) until it prunes; not a leak, so not counted as one
                broker.management.prune()
            gc.unfreeze()       # what start-up made and has since become garbage (a backup's first
            _audit(broker, "stop")      # link to its primary) is collectable again: not a leak
        return 0

    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
