"""qpid-stat and the shared table display, on canned QMF answers."""
import pytest

from cypid.tools import display, stat
import test_tools_fakeagent
from test_tools_fakeagent import T0, FakeQpidd, oname

use_fake = test_tools_fakeagent.use_fake  # the fixture


@pytest.fixture
def fake():
    return FakeQpidd()


def run(capsys, *argv):
    rc = stat.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# -- display -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,text", [
    (0, "   0"), (999, " 999"), (1000, "1.00k"), (1234, "1.23k"), (45600, "45.6k"), (123456, " 123k"),
    (1234567, "1.23m"), (45_600_000, "45.6m"), (2_000_000_000, "2.00g"),
])
def test_kmg(value, text):
    assert display.fmt_kmg(value) == text


@pytest.mark.parametrize("ns,text", [
    (0, "0s"), (59 * 10**9, "59s"), (61 * 10**9, "1m 1s"), (3723 * 10**9, "1h 2m 3s"),
    (86400 * 10**9, "1d 0h 0m 0s"), (-5, "0s"),
])
def test_duration(ns, text):
    assert display.fmt_duration(ns) == text


def test_cell_formats():
    assert display.format_cell(1234567, display.COMMAS) == "1,234,567"
    assert display.format_cell(True, display.Y) == "Y"
    assert display.format_cell(False, display.Y) == ""
    assert display.format_cell(False, display.YN) == "N"
    assert display.format_cell(None, display.KMG) == ""
    assert display.format_cell("text", display.COMMAS) == "?"
    assert display.format_cell(T0, display.TIME_LONG) == "Tue Nov 14 22:13:20 2023"


def test_table_layout():
    lines = display.Display(prefix="  ").table_lines("Title", ["a", "bbbb", "c"], [["xx", 1, None], ["y", 22, "z"]])
    assert lines == ["Title",
                     "  a   bbbb  c",
                     "  =============",
                     "  xx  1",
                     "  y   22    z"]
    assert display.Display().table_lines("Empty", ["a"], []) == ["Empty"]


def test_sorter():
    rows = [["a", 3], ["b", 10], ["c", 1]]
    assert [r[0] for r in display.Sorter(["n", "v"], rows, "v").get_sorted()] == ["b", "a", "c"]
    assert [r[0] for r in display.Sorter(["n", "v"], rows, "v", increasing=True, limit=2).get_sorted()] == ["c", "a"]
    with pytest.raises(ValueError, match="sortCol 'x', not found in headers"):
        display.Sorter(["n", "v"], rows, "x")


# -- qpid-stat ---------------------------------------------------------------------------------------------

def populate(fake):
    fake.add_queue("big", durable=True, depth=2500)
    fake.add_queue("small", depth=3)
    fake.add_queue("tmp", auto_delete=True, exclusive=True)
    fake.values("queue", "big")["consumerCount"] = 2


def test_queues_table(use_fake, capsys):
    populate(use_fake)
    rc, out, _ = run(capsys, "-q")
    assert rc == 0
    assert out.splitlines() == [
        "Queues",
        "  queue  dur  autoDel  excl  msg    msgIn  msgOut  bytes  bytesIn  bytesOut  cons  bind",
        "  " + "=" * 87,
        "  big    Y                   2.50k  2.50k     0    2.56m  2.56m       0         2     1",
        "  small                         3      3      0    3.07k  3.07k       0         0     1",
        "  tmp         Y        Y        0      0      0       0      0        0         0     1",
    ]


def test_queues_sorted_increasing_and_limited(use_fake, capsys):
    populate(use_fake)
    rc, out, _ = run(capsys, "-q", "-S", "msg", "-I", "-L", "2")
    assert [line.split()[0] for line in out.splitlines()[3:]] == ["tmp", "small"]
    rc, out, _ = run(capsys, "-q", "-S", "msg")
    assert [line.split()[0] for line in out.splitlines()[3:]] == ["big", "small", "tmp"]


def test_one_queue(use_fake, capsys):
    populate(use_fake)
    rc, out, _ = run(capsys, "-q", "big")
    lines = out.splitlines()
    assert lines[:4] == [
        "Properties:",
        "  Name  Durable  AutoDelete  Exclusive  FlowStopped  FlowStoppedCount  Consumers  Bindings",
        "  ==========================================================================================",
        "  big   Y        N           N          N            0                 2          1"]
    assert lines[4] == ""
    assert lines[5] == "Optional Properties:"
    assert lines[8:10] == ["  arguments     {}", "  alt-exchange"]
    assert lines[10] == "" and lines[11] == "Statistics:"
    assert lines[14] == "  queue-depth                 2,500     2,560,000"
    assert not any("discards-no-route" in line for line in lines)
    rc, out, _ = run(capsys, "-q", "nope")
    assert (rc, out) == (1, "Queue 'nope' not found\n")


def test_general(use_fake, capsys):
    rc, out, _ = run(capsys, "-g")
    lines = out.splitlines()
    assert lines[:4] == ["Broker Summary:",
                         "  uptime    cluster       connections  sessions  exchanges  queues",
                         "  ==================================================================",
                         "  1h 2m 3s  <standalone>  0            0         8          0"]
    assert lines[4] == "" and lines[5] == "Aggregate Broker Statistics:"
    assert lines[6] == "  Statistic                   Messages   Bytes"
    assert "  acquires                    1,234,567" in lines
    assert "  discards-no-route           2" in lines
    assert lines[-1].startswith("  abandoned-via-alt ")


def test_exchanges(use_fake, capsys):
    use_fake.values("exchange", "amq.direct").update(msgReceives=12345, msgRoutes=12000, msgDrops=345)
    rc, out, _ = run(capsys, "-e")
    lines = out.splitlines()
    assert lines[1].split() == ["exchange", "type", "dur", "bind", "msgIn", "msgOut", "msgDrop", "byteIn",
                                "byteOut", "byteDrop"]
    assert lines[4].split() == ["amq.direct", "direct", "0", "12.3k", "12.0k", "345", "0", "0", "0"]


def test_connections(use_fake, capsys):
    use_fake._add("connection", "qpid.127.0.0.1:5672-127.0.0.1:4711", {
        "address": "qpid.127.0.0.1:5672-127.0.0.1:4711", "remoteProcessName": "spout", "remotePid": 4711,
        "saslMechanism": "ANONYMOUS", "authIdentity": "anonymous", "msgsFromClient": 1500, "msgsToClient": 7})
    b = use_fake.objects[oname("broker", "amqp-broker")]
    conn = use_fake.objects[oname("connection", "qpid.127.0.0.1:5672-127.0.0.1:4711")]
    b["_update_ts"] = conn["_create_ts"] + 90 * 10**9
    conn["_update_ts"] = conn["_create_ts"] + 80 * 10**9
    rc, out, _ = run(capsys, "-c")
    assert out.splitlines()[3].split() == ["qpid.127.0.0.1:5672-127.0.0.1:4711", "spout", "4711", "ANONYMOUS",
                                           "anonymous", "1m", "30s", "10s", "1.50k", "7"]


def test_subscriptions(use_fake, capsys):
    use_fake._add("connection", "c1", {"address": "c1", "remoteProcessName": "drain", "remotePid": 9})
    use_fake._add("session", "s1", {"name": "s1", "connectionRef": {"_object_name": oname("connection", "c1")},
                                    "unackedMessages": 4})
    use_fake.add_queue("q")
    use_fake._add("subscription", "s1,q,0", {
        "sessionRef": {"_object_name": oname("session", "s1")}, "queueRef": {"_object_name": oname("queue", "q")},
        "name": "0", "browsing": False, "acknowledged": True, "exclusive": False, "creditMode": "CREDIT",
        "delivered": 12345})
    use_fake._add("subscription", "orphan", {"sessionRef": {"_object_name": oname("session", "gone")},
                                             "queueRef": {"_object_name": oname("queue", "q")}, "name": "1"})
    rc, out, _ = run(capsys, "-u")
    lines = out.splitlines()
    assert lines[0] == "Subscriptions"
    assert len(lines) == 4
    assert lines[3].split() == ["0", "q", "c1", "drain", "9", "Y", "CREDIT", "12,345", "4"]


def test_memory(use_fake, capsys):
    use_fake._add("memory", "amqp-broker", {"name": "amqp-broker", "malloc_arena": 1234567}, name="amqp-broker")
    rc, out, _ = run(capsys, "-m")
    assert out.splitlines() == ["Broker Memory Statistics:", "  Statistic     Value", "  " + "=" * 25,
                                "  malloc_arena  1,234,567"]


def test_acl_not_loaded(use_fake, capsys):
    assert run(capsys, "--acl")[1] == "ACL Policy Module is not installed\n"


def test_no_command_is_a_usage_error(use_fake, capsys):
    rc, out, err = run(capsys)
    assert rc == 2
    assert err.startswith("Usage: qpid-stat -g [options] | -c | -e | -q [queue-name] | -u | -m | --acl\n")
    assert ("qpid-stat: error: You must specify one of these options: -g, -c, -e, -q, -m, or -u. "
            "For details, try $ qpid-stat --help") in err
    assert use_fake.connects == []


def test_bad_sort_column_is_a_usage_error(use_fake, capsys):
    rc, out, err = run(capsys, "-q", "-S", "nosuch")
    assert rc == 2 and "sortCol 'nosuch', not found in headers" in err
    assert use_fake.connects == []


def test_failures(capsys):
    rc, out, err = run(capsys, "-b", "127.0.0.1:1", "-g")
    assert rc == 1 and err.startswith("Failed: ConnectError - cannot connect to 127.0.0.1:1")


def test_agent_silence_is_a_timeout(use_fake, capsys):
    use_fake.silent = True
    rc, out, err = run(capsys, "-t", "1", "-q")
    assert rc == 1 and err.startswith("Failed: Timeout - no answer to the QMF query within 1s")
