"""Small additions to python-qpid-proton's BlockingConnection API for tests."""


def drain(conn, receiver, credit=0, timeout=10):
    """Drain ``receiver`` with ``credit`` more credit; return once the broker has answered (the
    drain is over and every delivery that came is in the fetcher), and return how many messages
    the fetcher holds. A receiver created with ``credit=None`` has no prefetch window, so the
    drain really ends with zero credit."""
    receiver.drain(credit)
    # poll: process the connection's events until the drain completes
    conn.wait(lambda: not receiver.draining() and not receiver.queued, timeout=timeout,
              msg=f"drain of {receiver.link.name}")
    return receiver.fetcher.has_message
