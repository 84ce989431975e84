"""The qpidd daemon: read the options, start one Broker on one event loop, stop cleanly on a signal."""
import asyncio
import os
import signal
import sys

from .broker import Broker
from .options import parse_options


def _loop():
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:   # pragma: no cover - uvloop is a dependency, asyncio is the fallback
        return asyncio.new_event_loop()


def main(argv=None):
    options = parse_options(argv)
    from .logs import setup_logging
    log = setup_logging(options, "cypid.broker")
    if options.data_path:
        os.makedirs(options.data_path, exist_ok=True)
    loop = _loop()
    asyncio.set_event_loop(loop)
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
        if options.pidfile:
            with open(options.pidfile, "w") as f:
                f.write("%d\n" % os.getpid())
        await stopping.wait()
        log.log(25, "Shut down")
        await broker.stop()
        return 0

    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
