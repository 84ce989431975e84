"""The broker's memory stays flat across repeated qpid-perftest iterations (the short version of
``python -m cypid.perf.soak``): once the queues are drained, RSS after the warm-up iterations grows by
less than 10 MiB however many messages went through. The queue is declared with producer flow
control (2000 messages), so a subscriber the machine slows down cannot raise the high-water mark."""
import io

from cypid.perf.soak import MIB, build_parser, soak

WARMUP = 2
LIMIT = 10 * MIB


def test_rss_flat_across_perftest_iterations(broker):
    args = build_parser().parse_args([
        "-b", "127.0.0.1:%d" % broker.port, "--pid", str(broker.pid),
        "--duration", "40", "--iterations", "12", "--count", "50000", "--size", "1024",
        "--warmup", str(WARMUP), "--base-name", "soaktest", "--flow-stop", "2000",
    ])
    out = io.StringIO()
    result = soak(args, out=out)
    report = out.getvalue()
    samples = result["samples"]
    assert "WARNING" not in report, report
    assert len(samples) >= WARMUP + 2, report
    assert result["growth"] < LIMIT, report
