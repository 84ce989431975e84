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


def take_all(conn, address, limit=None, accept=True, timeout=10):
    """Every message ``address`` holds now (at most ``limit``), taken by a new receiver (accepted
    unless ``accept`` is false) and closed. Drained until the broker says it has no more: never a
    wait for a quiet spell, which a loaded machine outlasts before the first message comes."""
    receiver = conn.create_receiver(address, credit=None)
    out = []
    try:
        while limit is None or len(out) < limit:
            want = 100 if limit is None else min(100, limit - len(out))
            ready = drain(conn, receiver, want, timeout=timeout)
            if not ready:
                break
            for _ in range(min(ready, want)):
                out.append(receiver.receive(timeout=timeout))
                if accept:
                    receiver.accept()
    finally:
        receiver.close()
    return out
