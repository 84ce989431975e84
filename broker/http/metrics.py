"""/metrics: the broker's counters in Prometheus' text exposition format (version 0.0.4), with
prometheus_client's conventions: ``cypid_`` names with their unit (``_messages``, ``_bytes``,
``_seconds``), counters ending in ``_total`` (``# TYPE x_total counter``, as prometheus_client writes
them), labels ``queue`` / ``exchange`` / ``connection``, and the ``process_*`` family of
prometheus_client's ProcessCollector.

Everything is read at scrape time from what the broker already keeps: the queues' C counters (the
ones the QMF agent reports), the exchanges' and connections' plain ints, the journal writer's sync
times. Nothing here runs per message. The sample lines are written in C (cypid.pyx.exposition), and
``render()`` yields between families so the loop serves messages in between (a scrape of 10,000
queues: tests/bench/test_metrics_bench.py).
"""
import os

from cypid.pyx.exposition import samples

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: per queue: (name, type, help, the Queue attribute read)
QUEUE_FAMILIES = (
    ("cypid_queue_depth_messages", "gauge",
     "Messages on the queue, waiting or acquired and not yet settled (QMF msgDepth).", "msgDepth"),
    ("cypid_queue_depth_bytes", "gauge", "Bytes of the messages on the queue (QMF byteDepth).", "byteDepth"),
    ("cypid_queue_enqueued_total", "counter", "Messages enqueued (QMF msgTotalEnqueues).", "msgTotalEnqueues"),
    ("cypid_queue_dequeued_total", "counter", "Messages dequeued (QMF msgTotalDequeues).", "msgTotalDequeues"),
    ("cypid_queue_enqueued_bytes_total", "counter", "Bytes enqueued (QMF byteTotalEnqueues).",
     "byteTotalEnqueues"),
    ("cypid_queue_dequeued_bytes_total", "counter", "Bytes dequeued (QMF byteTotalDequeues).",
     "byteTotalDequeues"),
    ("cypid_queue_consumers", "gauge", "Consumers subscribed to the queue.", "consumerCount"),
    ("cypid_queue_unacked_messages", "gauge",
     "Messages delivered to consumers and not yet settled (QMF unackedMessages).", "unackedMessages"),
    ("cypid_queue_acquired_total", "counter", "Deliveries to consumers that acquired (QMF acquires).",
     "acquires"),
    ("cypid_queue_released_total", "counter", "Deliveries released back to the queue (QMF releases).",
     "releases"),
)
#: per queue, one family with a ``reason`` label: (reason, attribute)
DISCARD_REASONS = (("ttl", "discardsTtl"), ("ring", "discardsRing"), ("lvq", "discardsLvq"),
                   ("overflow", "discardsOverflow"), ("subscriber", "discardsSubscriber"),
                   ("purge", "discardsPurge"))
EXCHANGE_FAMILIES = (
    ("cypid_exchange_received_total", "counter", "Messages published to the exchange (QMF msgReceives).",
     "msgReceives"),
    ("cypid_exchange_received_bytes_total", "counter", "Bytes published to the exchange (QMF byteReceives).",
     "byteReceives"),
    ("cypid_exchange_routed_total", "counter",
     "Queue deliveries the exchange routed, one per queue a message went to (QMF msgRoutes).", "msgRoutes"),
    ("cypid_exchange_dropped_total", "counter",
     "Messages the exchange matched to no queue (QMF msgDrops).", "msgDrops"),
    ("cypid_exchange_bindings", "gauge", "Bindings of the exchange.", "bindingCount"),
)
CONNECTION_FAMILIES = (
    ("cypid_connection_received_bytes_total", "counter", "Bytes read from the connection.", "stats_bytes_in"),
    ("cypid_connection_sent_bytes_total", "counter", "Bytes written to the connection.", "stats_bytes_out"),
    ("cypid_connection_received_frames_total", "counter", "AMQP frames read from the connection (QMF "
     "framesFromClient).", "stats_frames_in"),
)


def escape(value):
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    value = str(value)
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def number(value):
    """An int as is; a float as prometheus_client writes it (+Inf, -Inf, NaN, repr otherwise)."""
    if isinstance(value, int):
        return str(int(value))
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def header(name, kind, text):
    return "# HELP %s %s\n# TYPE %s %s\n" % (name, text, name, kind)


def scalar(name, kind, text, value):
    return "%s%s %s\n" % (header(name, kind, text), name, number(value))


def _family(name, kind, text, labels, objects, attr):
    """One family over ``objects`` (bytes): ``labels[i]`` is object i's label text, ``attr`` its value."""
    return header(name, kind, text).encode() + samples(name.encode(), labels, objects, attr)


# -- what the broker has, read once per scrape -----------------------------------------------------

def _sessions_links(connections):
    sessions = links = 0
    for conn in connections:
        for session in list(getattr(conn, "local_sessions", {}).values()):
            sessions += 1
            links += len(getattr(session, "local_handles", ()))
    return sessions, links


def journal_usage(store):
    """(journals, files, bytes on disk) of the store's journals (0s without a store)."""
    if store is None:
        return 0, 0, 0
    from cypid.pyx.journal_format import HEADER_PAGE, PAGE
    count = files = size = 0
    for qj in list(store.journals.values()):
        journal = getattr(qj, "journal", None)
        if journal is None:
            continue
        journal = getattr(journal, "_journal", journal)     # the tests' failpoint wrapper
        n = getattr(journal, "n_exist", 0)
        count += 1
        files += n
        size += n * (HEADER_PAGE + journal.file_size * PAGE)
    return count, files, size


def process_families():
    """prometheus_client's ProcessCollector names, from /proc/self (Linux)."""
    out = []
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        page = os.sysconf("SC_PAGE_SIZE")
        with open("/proc/stat", "rb") as f:
            btime = next(float(line.split()[1]) for line in f if line.startswith(b"btime"))
        vsize, rss = int(fields[20]), int(fields[21]) * page
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        start = btime + int(fields[19]) / ticks
    except (OSError, ValueError, IndexError, StopIteration):
        return ""
    out.append(scalar("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vsize))
    out.append(scalar("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss))
    out.append(scalar("process_start_time_seconds", "gauge",
                      "Start time of the process since unix epoch in seconds.", start))
    out.append(scalar("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
                      cpu))
    try:
        out.append(scalar("process_open_fds", "gauge", "Number of open file descriptors.",
                          len(os.listdir("/proc/self/fd"))))
    except OSError:
        pass
    import resource
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY:
        out.append(scalar("process_max_fds", "gauge", "Maximum number of open file descriptors.", soft))
    return "".join(out)


def histogram(name, text, count, total, buckets):
    lines = [header(name, "histogram", text)]
    for bound, cumulative in buckets:
        lines.append('%s_bucket{le="%s"} %d\n' % (name, number(float(bound)), cumulative))
    lines.append("%s_count %d\n" % (name, count))
    lines.append("%s_sum %s\n" % (name, number(float(total))))
    return "".join(lines)


class Labels:
    """Label texts (``queue="q1"``, escaped, as bytes) kept between scrapes: names do not change,
    so a scrape of 10,000 queues looks them up instead of building them. Forgets names gone."""

    def __init__(self, key):
        self.prefix = key + '="'
        self.known = {}

    def __call__(self, names):
        known = self.known
        out = [known.get(n) for n in names]
        if None in out:
            for i, n in enumerate(names):
                if out[i] is None:
                    out[i] = known[n] = (self.prefix + escape(n) + '"').encode("utf-8")
        if len(known) > 2 * len(names) + 1000:
            self.known = dict(zip(names, out))
        return out


class LabelCache:
    """One per listener (never global: two brokers in a process keep their own)."""

    def __init__(self):
        self.queue = Labels("queue")
        self.exchange = Labels("exchange")
        self.connection = Labels("connection")


def render(broker, ready, cache=None):
    """Yields the exposition (bytes) a family or a few at a time; ``ready``: what /readyz says;
    ``cache``: the listener's LabelCache (a fresh one if None)."""
    cache = cache or LabelCache()
    nodes = broker.nodes
    queues = list(nodes.queues.values())
    exchanges = list(nodes.exchanges)
    connections = list(broker.connections)
    sessions, links = _sessions_links(connections)
    store = nodes.store
    parts = [
        '%scypid_build_info{version="%s"} 1\n' % (
            header("cypid_build_info", "gauge", "The broker's version (always 1)."), escape(broker.version)),
        scalar("cypid_ready", "gauge", "1 when the broker serves clients (/readyz), else 0.", int(bool(ready))),
        scalar("cypid_connections", "gauge", "Open AMQP connections.", len(connections)),
        scalar("cypid_sessions", "gauge", "Sessions on the open connections.", sessions),
        scalar("cypid_links", "gauge", "Links attached on the open connections.", links),
        scalar("cypid_queues", "gauge", "Queues.", len(queues)),
        scalar("cypid_exchanges", "gauge", "Exchanges.", len(exchanges)),
        scalar("cypid_discarded_no_route_total", "counter",
               "Messages the broker dropped because no queue took them (QMF discardsNoRoute).",
               getattr(nodes, "discards_no_route", 0)),
    ]
    journals, files, size = journal_usage(store)
    parts.append(scalar("cypid_journals", "gauge", "Durable queue journals open.", journals))
    parts.append(scalar("cypid_journal_files", "gauge", "Files of the journals.", files))
    parts.append(scalar("cypid_journal_bytes", "gauge", "Disk space of the journals' files in bytes.", size))
    times = getattr(getattr(store, "writer", None), "sync_times", None)
    count, total, buckets = times.snapshot() if times is not None else (0, 0.0, [(float("inf"), 0)])
    parts.append(scalar("cypid_journal_syncs_total", "counter",
                        "Journal syncs (write and fdatasync of one journal) run by the writer thread.", count))
    parts.append(histogram("cypid_journal_sync_seconds", "How long each journal sync took.",
                           count, total, buckets))
    parts.append(process_families())
    yield "".join(parts).encode("utf-8")

    labels = cache.queue([q.name for q in queues])
    for name, kind, text, attr in QUEUE_FAMILIES:
        yield _family(name, kind, text, labels, queues, attr)
    name = "cypid_queue_discarded_total"
    chunk = [header(name, "counter", "Messages the queue discarded, by reason (QMF discards*).").encode()]
    for reason, attr in DISCARD_REASONS:
        chunk.append(samples(name.encode(), labels, queues, attr, (',reason="%s"' % reason).encode()))
    yield b"".join(chunk)

    labels = cache.exchange([ex.name for ex in exchanges])
    yield b"".join(_family(name, kind, text, labels, exchanges, attr)
                   for name, kind, text, attr in EXCHANGE_FAMILIES)

    labels = cache.connection([str(getattr(c, "address", "?")) for c in connections])
    yield b"".join(_family(name, kind, text, labels, connections, attr)
                   for name, kind, text, attr in CONNECTION_FAMILIES)


def text(broker, ready=True, cache=None):
    """The whole exposition at once (tests, benchmarks), as bytes."""
    return b"".join(render(broker, ready, cache))


__all__ = ["CONTENT_TYPE", "LabelCache", "escape", "journal_usage", "render", "text"]
