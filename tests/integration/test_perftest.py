"""qpid-perftest, qpid-latency-test and qpid-perf-compare against real cypid brokers, as a user runs
them (``python -m cypid.perf.<tool>``), with small counts: the output has qpidd's lines and the
numbers parse."""
import re
import subprocess
import sys

import pytest

G = r"[0-9.e+-]+"        # a number as %g prints it


def _run(module, *args, timeout=60):
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def perftest(broker, *args):
    return _run("cypid.perf.perftest", "-b", broker.url, "--timeout", "45", *args)


def test_perftest_default_output(broker):
    rc, out, err = perftest(broker, "--count", "2000")
    assert rc == 0, out + err
    lines = out.splitlines()
    assert lines[:4] == [
        "Processing 1 messages from qpid-perftest_sub_ready . done.",
        "Sending start 1 times to qpid-perftest_pub_start",
        "Processing 1 messages from qpid-perftest_pub_done . done.",
        "Processing 1 messages from qpid-perftest_sub_done . done.",
    ]
    assert re.fullmatch(r"Total 4000 transfers of 1024 bytes in %s seconds\." % G, lines[5])
    assert lines[7] == "Publish transfers/sec:    "
    assert re.fullmatch(G, lines[8]) and re.fullmatch(r"Average: %s" % G, lines[9])
    assert lines[11] == "Subscribe transfers/sec:  "
    assert re.fullmatch(G, lines[12]) and re.fullmatch(r"Average: %s" % G, lines[13])
    assert re.fullmatch(r"Total transfers/sec:      %s" % G, lines[15])
    assert re.fullmatch(r"Total Mbytes/sec: %s" % G, lines[16])
    tx = float(lines[15].split()[-1])
    assert float(lines[16].split()[-1]) == pytest.approx(tx * 1024 / 1048576, rel=1e-4)


def test_perftest_summary_iterations_and_several_clients(broker):
    rc, out, err = perftest(broker, "--count", "1001", "--npubs", "2", "--nsubs", "2", "--sub-ack", "50",
                            "--iterations", "2", "-s", "--base-name", "pt2")
    assert rc == 0, out + err
    lines = out.splitlines()
    assert lines[0] == "WARNING: Adjusted --count to 1002 the nearest multiple of --nsubs"
    row = r"%s\t%s\t%s\t%s" % (G, G, G, G)
    assert re.fullmatch(row, lines[1]) and re.fullmatch(row, lines[2])
    assert lines[3] == "Averages: " and re.fullmatch(row, lines[4])
    assert len(lines) == 5


@pytest.mark.parametrize("mode", ["fanout", "topic"])
def test_perftest_fanout_and_topic(broker, mode):
    rc, out, err = perftest(broker, "--mode", mode, "--nsubs", "2", "--count", "1000", "-s", "--qt", "2")
    assert rc == 0, out + err
    assert re.fullmatch(r"%s\t%s\t%s\t%s\n" % (G, G, G, G), out)
    if mode == "fanout":
        assert "WARNING: Fanout mode, ignoring --qt=2" in err


def test_perftest_durable_completes(broker):
    rc, out, err = perftest(broker, "--durable", "yes", "--count", "1000", "-s")
    assert rc == 0, out + err
    assert re.fullmatch(r"%s\t%s\t%s\t%s\n" % (G, G, G, G), out)


def test_perftest_roles_in_separate_processes(broker):
    """qpidd's multi-process use: --setup once, then --subscribe, --publish and --control side by side."""
    common = ["-b", broker.url, "--count", "500", "--base-name", "roles", "--timeout", "45"]
    rc, out, err = _run("cypid.perf.perftest", "--setup", *common)
    assert rc == 0 and out == "", out + err
    clients = [subprocess.Popen([sys.executable, "-m", "cypid.perf.perftest", role, *common],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for role in ("--subscribe", "--publish")]
    try:
        rc, out, err = _run("cypid.perf.perftest", "--control", "-s", *common)
        assert rc == 0, out + err
        assert re.fullmatch(r"%s\t%s\t%s\t%s\n" % (G, G, G, G), out)
        for p in clients:
            assert p.wait(timeout=30) == 0, p.stdout.read()
    finally:
        for p in clients:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_perftest_reports_a_dead_broker(broker):
    broker.stop()
    rc, out, _ = perftest(broker, "--count", "10")
    assert rc == 1
    assert out.startswith("Controller exception: ")


def test_latency_test_prints_percentiles(broker):
    rc, out, err = _run("cypid.perf.latency", "-b", broker.url, "--rate", "2000", "--count", "600",
                        "--report-frequency", "100", "--size", "64", "--timeout", "30")
    assert rc == 0, out + err
    lines = out.splitlines()
    assert any(re.fullmatch(r"Latency\(ms\): min=%s, max=%s, avg=%s" % (G, G, G), line) for line in lines)
    assert re.fullmatch(r"Sent 600 msgs through latency-test-1 in %sms \(%s msgs/s\) "
                        r"Latency\(ms\): min=%s, max=%s, avg=%s" % (G, G, G, G, G), lines[-2])
    m = re.fullmatch(r"Percentiles\(ms\): p50=(%s), p99=(%s), p99\.9=(%s)" % (G, G, G), lines[-1])
    assert m and float(m.group(1)) <= float(m.group(2)) <= float(m.group(3))


def test_latency_test_count_mode(broker):
    rc, out, err = _run("cypid.perf.latency", "-b", broker.url, "--count", "300", "--timeout", "30")
    assert rc == 0, out + err
    assert out.splitlines()[0].startswith("Sent 300 msgs through latency-test-1 in ")
    assert out.splitlines()[1].startswith("Percentiles(ms): p50=")


def test_compare_two_brokers(broker_factory):
    a, b = broker_factory(), broker_factory()
    rc, out, err = _run("cypid.perf.compare", "-b", "first=" + a.url, "-b", b.url, "--count", "1000",
                        "--timeout", "45")
    assert rc == 0, out + err
    lines = out.splitlines()
    assert lines[0].split() == ["broker", "pubs/sec", "subs/sec", "transfers/sec", "Mbytes/sec", "best",
                                "tx/sec", "ratio"]
    assert lines[1].split()[0] == "first" and lines[1].split()[-1] == "1.00"
    assert lines[2].split()[0] == b.url and re.fullmatch(r"\d+\.\d\d", lines[2].split()[-1])
    assert "round 1/1: first" in err
