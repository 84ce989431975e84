"""The smaller differences from qpidd that issue 15 lists, one test each: events for objects made
through QMF name who made them, qpid-stat -m has figures, the broker says what it is, qpid-journal
takes a queue's name, and ``qpid-config log bogus`` fails as qpidd's does (status 7)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from cypid.pyx.journal import Journal
from cypid.tools import journal_tool, qmf
from tests.integration.test_tools import Reader

BIN = Path(sys.prefix) / "bin"


def tool(name, broker, *args):
    result = subprocess.run([str(BIN / name), "-b", broker.url] + list(args), capture_output=True, text=True,
                            timeout=120)
    return result


def test_events_of_qmf_made_objects_name_rhost_and_user(cypid):
    proc = subprocess.Popen([str(BIN / "qpid-printevents"), cypid.url], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    reader = Reader(proc)
    try:
        reader.wait_for(r"brokerConnected")
        assert tool("qpid-config", cypid, "add", "queue", "made-by-qmf").returncode == 0
        m = reader.wait_for(r"queueDeclare .* qName=made-by-qmf rhost=(\S*) user=(\S*)$")
        assert re.match(r"qpid\.127\.0\.0\.1:%d-127\.0\.0\.1:\d+$" % cypid.port, m.group(1)), m.group(0)
        assert m.group(2) == "anonymous"
    finally:
        proc.terminate()
        proc.wait(30)


def test_qpid_stat_m_has_memory_figures(cypid):
    result = tool("qpid-stat", cypid, "-m")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Broker Memory Statistics:"
    figures = dict(line.split() for line in lines[3:])
    assert set(figures) == {"malloc_arena", "malloc_ordblks", "malloc_hblks", "malloc_hblkhd",
                            "malloc_uordblks", "malloc_fordblks", "malloc_keepcost"}
    assert int(figures["malloc_arena"].replace(",", "")) > 0


def test_broker_says_what_it_is(cypid):
    with qmf.BrokerAgent.open(cypid.url) as agent:
        version = agent.get_broker().version
    assert re.match(r"cypid \S+ \(compatible with qpidd 1\.40\.0\)$", version), version
    out = subprocess.run([str(BIN / "qpidd"), "--version"], capture_output=True, text=True).stdout
    assert re.match(r"qpidd \(cypid\) version \S+, compatible with qpidd \(qpid-cpp\) 1\.40\.0$", out.strip())


def test_config_log_bogus_fails_as_qpidd(any_broker):
    result = tool("qpid-config", any_broker, "log", "bogus")
    assert result.returncode == 1
    assert "'error_code': 7" in result.stderr, result.stderr


def test_qpid_journal_takes_a_queue_name(tmp_path, capsys):
    data = tmp_path / "data"
    for name in ("orders", "invoices"):
        with Journal(data / "cypid-store" / "jrnl" / ("q-" + name), 4, 1, name=name) as j:
            j.append_enqueue(1, b"x")
    assert journal_tool.main(["--data-dir", str(data), "invoices"]) == 0
    out = capsys.readouterr().out
    assert "queue 'invoices'" in out and "queue 'orders'" not in out
    assert journal_tool.main(["--data-dir", str(data), "nosuch"]) == 2
    assert "no journal under" in capsys.readouterr().err


def test_qpid_tool_agents_id_and_the_brokers_own_schema(any_broker):
    result = subprocess.run([str(BIN / "qpid-tool"), any_broker.url], input="agents\nlist queue\nid\nschema\n",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "QMF Agents:" in out and re.search(r"apache\.org:qpidd:[0-9a-f-]{36}\s+apache\.org qpidd\s+\d+\s+2", out)
    table = out.split("Translation of Display IDs:", 1)[1].split("QMF Classes:", 1)[0]
    assert re.search(r"^\s+10\d\s+(\d+|<durable>)\s+Broker\s+org\.apache\.qpid\.broker:queue:\S+$", table, re.M)
    classes = out.split("QMF Classes:", 1)[1]
    assert "org.apache.qpid.broker  queue" in classes
    assert "org.apache.qpid.ha" not in classes                 # no HA module on either
    if any_broker.base_dir.parent.name == "cypid":           # qpidd's ACL module is always loaded
        assert "org.apache.qpid.acl" not in classes
