"""qpid-tool and qpid-printevents on canned QMF answers."""
import io
import re
import threading

import pytest
from proton import Message

from cypid.tools import printevents, qmf, schema, tool
from test_tools_fakeagent import PKG, T0, FakeQpidd, agent_for


@pytest.fixture
def fake():
    f = FakeQpidd()
    f.add_queue("perftest0", depth=500)
    return f


def session(fake, commands: str) -> str:
    out = io.StringIO()
    rc = tool.main(["localhost"], stdin=io.StringIO(commands), stdout=out,
                   connect=lambda *a, **k: agent_for(fake))
    assert rc == 0
    return out.getvalue()


def queue_id(text: str, name: str) -> str:
    m = re.search(r"^    (\d+) +\S+ +- +\d+\.%s$" % re.escape(name), text, re.M)
    assert m, text
    return m.group(1)


def test_list_summary(fake):
    text = session(fake, "list\n")
    assert text.startswith("Management Tool for QPID\nqpid: list\nManagement Object Types:\n")
    lines = text.splitlines()
    i = lines.index("Management Object Types:")
    assert lines[i + 1] == "    ObjectType                       Active  Deleted"
    assert lines[i + 2] == "    " + "=" * 50
    assert "    org.apache.qpid.broker:queue     1       0" in lines
    assert "    org.apache.qpid.broker:exchange  8       0" in lines
    assert text.endswith("qpid: quit\nExiting...\n")


def test_list_class_and_object(fake):
    text = session(fake, "list queue\n")
    qid = queue_id(text, "perftest0")
    assert re.search(r"^Objects of type org.apache.qpid.broker:queue\n    ID   Created   Destroyed  Index\n"
                     r"    =+\n", text, re.M)
    text = session(fake, "list queue\nlist %s\n" % qid)
    assert "Object of type org.apache.qpid.broker:queue: (last sample time: " in text
    rows = {tuple(line.split()[:2]): line for line in text.splitlines() if line.startswith("    config")
            or line.startswith("    inst")}
    assert rows[("config", "name")].split()[2] == "perftest0"
    assert rows[("config", "durable")].split()[2] == "False"
    assert rows[("config", "arguments")].endswith("{}")
    assert rows[("inst", "msgTotalEnqueues")].split()[2:] == ["500", "messages"]
    assert rows[("inst", "msgTotalDequeues")].split()[2:] == ["0"]          # same unit: not repeated
    assert rows[("inst", "byteDepth")].split()[2:] == ["512000", "octets"]
    assert rows[("inst", "consumerCount")].split()[2:] == ["0", "consumers"]
    assert rows[("inst", "bindingCount")].split()[2:] == ["1", "binding"]     # singular
    assert rows[("inst", "messageLatencySamples")].split()[2:] == ["0"]       # Count, shown as Samples
    assert ("inst", "messageLatencyCount") not in rows
    # the vhost reference is shown as the vhost's display id
    vhost_id = rows[("config", "vhostRef")].split()[2]
    assert vhost_id.isdigit()
    text = session(fake, "list queue\nlist %s\n" % vhost_id)
    assert "Object of type org.apache.qpid.broker:vhost:" in text


def test_list_several_ids_and_ranges(fake):
    text = session(fake, "list exchange\n")
    ids = sorted(int(m) for m in re.findall(r"^    (\d+) ", text, re.M))
    text = session(fake, "list exchange\nlist %d-%d\n" % (ids[1], ids[2]))
    header = [line for line in text.splitlines() if line.startswith("    Type ")][0]
    assert header.split() == ["Type", "Element", str(ids[1]), str(ids[2])]
    assert re.search(r"^    config  name +amq.direct +amq.topic$", text, re.M)


def test_list_ids_in_a_fresh_session_learns_the_objects_first(fake):
    text = session(fake, "list\nlist queue\n")
    qid = queue_id(text, "perftest0")
    text = session(fake, "list %s\n" % qid)
    assert re.search(r"^    config  name +perftest0$", text, re.M)


def test_list_unknown_things(fake):
    text = session(fake, "list nosuchclass\nlist 9999\n")
    assert "Unknown class: nosuchclass" in text
    assert "No object found with ID 9999" in text


def test_deleted_objects_are_counted(fake):
    out = io.StringIO()
    stdin = io.StringIO("list queue\n")
    agent = agent_for(fake)
    t = tool.QpidTool(agent, stdin=stdin, stdout=out)
    t.onecmd("list queue")
    fake.add_queue("gone")
    t.onecmd("list queue")
    del fake.objects["%s:queue:gone" % PKG]
    t.onecmd("list")
    assert re.search(r"^    org.apache.qpid.broker:queue +1 +1$", out.getvalue(), re.M)
    t.onecmd("list queue")
    assert re.search(r"^    \d+ +\S+ +\d\d:\d\d:\d\d +\d+\.gone$", out.getvalue(), re.M)


def test_schema(fake):
    text = session(fake, "schema\nschema queue\nschema qpid.queue\n")
    assert "QMF Classes:" in text
    assert re.search(r"^    org.apache.qpid.broker +queue +table$", text, re.M)
    assert text.count("Schema for class 'org.apache.qpid.broker:queue':") == 2
    assert re.search(r"^    Element +Type +Unit +Access +Notes +Description$", text, re.M)
    assert re.search(r"^    name +short-string +ReadCreate +index$", text, re.M)
    assert re.search(r"^    arguments +field-table +ReadOnly +Arguments supplied in queue.declare$", text, re.M)
    assert re.search(r"^    msgTotalEnqueues +uint64 +message +Total messages enqueued$", text, re.M)
    assert re.search(r"^    consumerCountHigh +uint32 +consumer +Current consumers on queue \(High\)$", text, re.M)
    assert re.search(r"^    messageLatencyAverage +delta-time +nanosecond +Broker latency through this queue "
                     r"\(Average\)$", text, re.M)
    assert "\nMethod 'purge' Discard all messages on queue\n" in text
    assert re.search(r"^    request +uint32 +in +0 for all messages or n>0 for n messages$", text, re.M)


def test_call_purge_and_arguments(fake):
    text = session(fake, "list queue\n")
    qid = queue_id(text, "perftest0")
    text = session(fake, "list queue\ncall %s purge\n" % qid)
    assert "OK (0) - {}" in text
    assert fake.calls[-1] == ("%s:queue:perftest0" % PKG, "purge", {})
    assert fake.values("queue", "perftest0")["msgDepth"] == 0
    fake.values("queue", "perftest0")["msgDepth"] = 10
    session(fake, "list queue\ncall %s purge 3 {}\n" % qid)
    assert fake.calls[-1][2] == {"request": 3, "filter": {}}
    session(fake, "list queue\ncall %s purge request=4\n" % qid)
    assert fake.calls[-1][2] == {"request": 4}
    text = session(fake, "list queue\ncall %s purge 1 {} extra\n" % qid)
    assert "Too many arguments" in text


def test_call_errors(fake):
    text = session(fake, "list queue\n")
    qid = queue_id(text, "perftest0")
    text = session(fake, "list queue\ncall %s nosuch\ncall 9999 purge\ncall\n" % qid)
    assert "UnknownMethod (2) - {}" in text
    assert "No object found with ID 9999" in text
    assert "Usage: call <ID> <methodName> [<args>]" in text


def test_call_broker_method_with_map_arguments(fake):
    text = session(fake, "list broker\n")
    bid = re.search(r"^    (\d+) ", text.split("Objects of type")[1], re.M).group(1)
    text = session(fake, "list broker\ncall %s create queue newq {'durable': True} True\n" % bid)
    assert "OK (0) - {}" in text
    assert fake.calls[-1][2] == {"type": "queue", "name": "newq", "properties": {"durable": True}, "strict": True}
    text = session(fake, "list broker\ncall %s getLogLevel\n" % bid)
    assert "OK (0) - {'level': 'notice+'}" in text


def test_time_format(fake):
    text = session(fake, "set time-format long\nlist queue\nset time-format nonsense\n")
    assert re.search(r"^    \d+ +\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4} +- +", text, re.M)
    assert "Usage: set time-format short|long" in text


def test_help_and_eof(fake):
    text = session(fake, "help\n")
    assert "    list <className>                - Print list of objects of the specified class" in text
    assert "    call <ID> <methodName> <args> - Invoke a method on an object" in text
    assert text.endswith("qpid: quit\nExiting...\n")


def test_timeouts_inside_a_session_do_not_end_it(fake):
    fake.silent = True
    out = io.StringIO()
    rc = tool.main(["localhost"], stdin=io.StringIO("list queue\n"), stdout=out,
                   connect=lambda *a, **k: agent_for(fake, timeout=0.05))
    assert rc == 0
    assert "Failed: Timeout - no answer to the QMF query" in out.getvalue()


def test_reconnects_when_the_connection_drops(fake):
    agents = []

    class Dropping(qmf.BrokerAgent):
        def query(self, *a, **k):
            if len(agents) == 1:
                raise qmf.ConnectError("connection to localhost:5672 lost: gone")
            return super().query(*a, **k)

        def close(self):
            pass  # the agents share one fake transport

    def connect(*a, **k):
        agents.append(Dropping(fake, timeout=2))
        return agents[-1]

    out = io.StringIO()
    assert tool.main(["localhost"], stdin=io.StringIO("list queue\n"), stdout=out, connect=connect) == 0
    text = out.getvalue()
    assert "Broker disconnected: connection to localhost:5672 lost: gone\nBroker connected: localhost\n" in text
    assert "Objects of type org.apache.qpid.broker:queue" in text
    assert len(agents) == 2


def test_tools_never_import_the_broker():
    import subprocess
    import sys
    code = ("import sys, cypid.tools.config, cypid.tools.stat, cypid.tools.tool, cypid.tools.printevents; "
            "print([m for m in sys.modules if m.startswith('cypid.broker')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unreachable(capsys):
    assert tool.main(["127.0.0.1:1"], stdin=io.StringIO("")) == 1
    assert capsys.readouterr().err.startswith("Failed: ConnectError - cannot connect to 127.0.0.1:1")


def test_schema_lookup():
    assert schema.find("queue").key == "org.apache.qpid.broker:queue"
    assert schema.find("org.apache.qpid.broker:queue") is schema.find("qpid.queue")
    assert schema.find("habroker").package == "org.apache.qpid.ha"
    assert schema.find("queueDeclare").kind == "event"
    assert schema.find("nothing") is None
    assert tool.parse_ids(["101", "103-105"]) == [101, 103, 104, 105]
    assert tool.parse_ids(["abc"]) is None
    assert tool._split_args("1 {'a': 1, 'b': [1, 2]} 'two words' x") == ["1", "{'a': 1, 'b': [1, 2]}",
                                                                        "'two words'", "x"]


# -- qpid-printevents -----------------------------------------------------------------------------------------

def event_message(name, values, ts=T0):
    return Message(body=[{"_schema_id": {"_package_name": PKG, "_class_name": name, "_type": "_event"},
                          "_values": values, "_timestamp": ts, "_severity": 6}],
                   properties={"method": "indication", "qmf.opcode": "_data_indication", "qmf.content": "_event"})


def test_event_line_format():
    (ev,) = qmf.parse_events(event_message("queueDeclare", {
        "rhost": "qpid.127.0.0.1:5672-127.0.0.1:4711", "user": "anonymous", "qName": "q1", "durable": False,
        "excl": False, "autoDel": False, "altEx": "", "args": {}, "disp": "created"}))
    assert printevents.event_line(ev) == (
        "Tue Nov 14 22:13:20 2023 org.apache.qpid.broker:queueDeclare rhost=qpid.127.0.0.1:5672-127.0.0.1:4711 "
        "user=anonymous qName=q1 durable=False excl=False autoDel=False altEx= args={} disp=created")


def test_notice_line():
    assert re.match(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} NOTIC qpid-printevents:brokerConnected "
                    r"broker=h:1$", printevents.notice("brokerConnected", "h:1"))


class FakeEventConnection:
    def __init__(self, messages, fail_after=True):
        self.messages = list(messages)
        self.fail_after = fail_after
        self.closed = False

    def receive_on(self, receiver, timeout):
        if self.messages:
            return self.messages.pop(0)
        if self.fail_after:
            raise qmf.ConnectError("connection lost")
        return None

    def close(self):
        self.closed = True


def test_watcher_prints_events_and_reconnects(monkeypatch):
    lines = []
    stop = threading.Event()
    attempts = []

    def fake_events(url, timeout=10, **opts):
        attempts.append(str(url))
        if len(attempts) == 2:
            raise qmf.ConnectError("refused")
        if len(attempts) >= 4:
            stop.set()
        return FakeEventConnection([event_message("queueDelete", {"qName": "q%d" % len(attempts)})]), None

    monkeypatch.setattr(qmf, "events", fake_events)
    w = printevents.Watcher("h:1", lines.append, {}, stop, retry_interval=0.01)
    w.run()
    kinds = [re.sub(r"^.*? (NOTIC qpid-printevents:\w+|org\.apache\.qpid\.broker:\w+ \S+).*$", r"\1", line)
             for line in lines]
    assert kinds[:6] == ["NOTIC qpid-printevents:brokerConnected", "org.apache.qpid.broker:queueDelete qName=q1",
                         "NOTIC qpid-printevents:brokerDisconnected",
                         # attempt 2 was refused: nothing printed for it
                         "NOTIC qpid-printevents:brokerConnected", "org.apache.qpid.broker:queueDelete qName=q3",
                         "NOTIC qpid-printevents:brokerDisconnected"]


def test_printevents_usage(capsys):
    assert printevents.main(["--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert printevents.main(["a:b:c"]) == 2
    assert "invalid broker address" in capsys.readouterr().err
    assert printevents.main(["--help"]) == 0
    assert "Collect and print events from one or more Qpid message brokers." in capsys.readouterr().out
