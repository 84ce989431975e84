"""broker/options.py and conf/qpidd.conf: names, defaults, precedence, value forms, errors."""
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cypid.broker.options import (
    COMMAND_LINE_ONLY,
    OPTION_TABLE,
    OPTIONS_BY_NAME,
    Options,
    OptionsError,
    parse_bool,
    parse_duration,
    parse_options,
)

CONF = Path(__file__).resolve().parents[2] / "conf" / "qpidd.conf"
OPTION_LINE = re.compile(r"^#?([a-z][a-z0-9-]*)=(.*)$")


def parse(argv=(), env=None):
    return parse_options(list(argv), env=env or {}, exit_on_error=False)


def error_of(argv=(), env=None):
    with pytest.raises(OptionsError) as info:
        parse(argv, env)
    return str(info.value)


def conf_entries():
    """[(lineno, name, value, commented)] for every option line of conf/qpidd.conf."""
    entries = []
    for lineno, line in enumerate(CONF.read_text().splitlines(), 1):
        m = OPTION_LINE.match(line)
        if m:
            entries.append((lineno, m.group(1), m.group(2), line.startswith("#")))
        else:
            assert line == "" or line.startswith("# ") or line == "#", f"conf line {lineno}: {line!r}"
    return entries


def write(tmp_path, text, name="qpidd.conf"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- conf file <-> option table

def test_every_option_is_in_the_conf_file():
    names = {name for _, name, _, _ in conf_entries()}
    missing = [spec.name for spec in OPTION_TABLE if spec.name not in names and spec.name not in COMMAND_LINE_ONLY]
    assert not missing, f"options missing from conf/qpidd.conf: {missing}"


def test_every_conf_key_is_an_option():
    unknown = [(n, name) for n, name, _, _ in conf_entries() if name not in OPTIONS_BY_NAME]
    assert not unknown, f"conf/qpidd.conf names unknown options: {unknown}"
    assert not {name for _, name, _, _ in conf_entries()} & set(COMMAND_LINE_ONLY)


def test_conf_values_are_the_defaults():
    values = {}
    for _, name, value, _ in conf_entries():
        values.setdefault(name, []).append(value)
    for spec in OPTION_TABLE:
        if spec.name in COMMAND_LINE_ONLY:
            continue
        written = values[spec.name]
        if spec.kind == "list":
            assert [v for v in written if v] == spec.default, spec.name
            continue
        assert len(written) == 1, f"{spec.name} appears {len(written)} times"
        if spec.default is None:
            assert written == [""], spec.name
        else:
            assert spec.convert(written[0]) == spec.default, spec.name


def test_every_conf_option_line_has_an_explanation():
    lines = CONF.read_text().splitlines()
    for lineno, name, _, _ in conf_entries():
        previous = lines[lineno - 2]
        explained = previous.startswith("# ") or OPTION_LINE.match(previous)
        assert explained, f"{name} (line {lineno}) has no comment"


def test_conf_sets_data_dir_for_make_run_and_parses_to_the_defaults():
    uncommented = {name: value for _, name, value, commented in conf_entries() if not commented}
    assert uncommented == {"data-dir": "data"}
    options = parse(["--config", str(CONF)])
    assert options == Options(config=str(CONF))
    assert (options.port, options.interface, options.data_dir) == (5672, ["127.0.0.1"], "data")


def test_defaults():
    o = parse()
    assert o == Options()
    assert o.port == 5672 and o.interface == ["127.0.0.1"] and o.data_dir == "data"
    assert o.auth is False and o.log_to_stderr is True and o.log_enable == ["notice+"]
    assert o.max_connections == 500 and o.session_max_unacked == 5000
    assert o.default_queue_limit == 104857600
    assert (o.default_flow_stop_threshold, o.default_flow_resume_threshold) == (80, 70)
    assert o.default_event_threshold_ratio == 80
    assert o.queue_purge_interval == 600.0 and o.mgmt_pub_interval == 10.0
    assert o.max_negotiate_time == 10.0
    assert (o.num_jfiles, o.jfile_size_pgs) == (8, 24)
    assert o.data_path == "data" and o.store_path == "data"


def test_defaults_are_fresh_lists():
    a, b = parse(), parse()
    a.interface.append("x")
    assert b.interface == ["127.0.0.1"]


# ---------------------------------------------------------------- precedence

def test_precedence_command_line_env_config_default(tmp_path):
    conf = write(tmp_path, "port=1111\nrealm=FROMCONF\nmax-connections=7\nconnection-backlog=3\n")
    env = {"QPID_PORT": "2222", "QPID_REALM": "FROMENV", "QPID_MAX_CONNECTIONS": "8"}
    o = parse(["--config", conf, "--port", "3333"], env)
    assert o.port == 3333  # command line beats env and config
    assert o.realm == "FROMENV"  # env beats config
    assert o.max_connections == 8
    assert o.connection_backlog == 3  # config beats default
    assert o.session_max_unacked == 5000  # default


def test_precedence_for_repeatable_options(tmp_path):
    conf = write(tmp_path, "interface=10.0.0.1\ninterface=10.0.0.2\n")
    assert parse(["--config", conf]).interface == ["10.0.0.1", "10.0.0.2"]
    assert parse(["--config", conf], {"QPID_INTERFACE": "::1"}).interface == ["::1"]
    assert parse(["--config", conf, "--interface", "a", "--interface", "b"],
                 {"QPID_INTERFACE": "::1"}).interface == ["a", "b"]


def test_precedence_for_switches(tmp_path):
    conf = write(tmp_path, "no-data-dir=yes\n")
    assert parse(["--config", conf]).no_data_dir is True
    assert parse(["--config", conf], {"QPID_NO_DATA_DIR": "no"}).no_data_dir is False
    o = parse(["--no-data-dir"])
    assert o.no_data_dir is True and o.data_path is None and o.store_path is None


def test_config_file_from_environment(tmp_path):
    conf = write(tmp_path, "port=4444\n")
    assert parse([], {"QPID_CONFIG": conf}).port == 4444


def test_config_file_syntax(tmp_path):
    conf = write(tmp_path, "# comment\n\n   port = 4445  \nlog-enable=debug+:Network\nlog-enable=notice+\n"
                           "store-dir=\n")
    o = parse(["--config", conf])
    assert o.port == 4445
    assert o.log_enable == ["debug+:Network", "notice+"]
    assert o.store_dir is None


def test_environment_variable_names():
    env = {"QPID_PORT": "0", "QPID_LOG_ENABLE": "info+", "QPID_DATA_DIR": "/x", "QPID_LOG_TO_FILE": "f.log",
           "QPID_DEFAULT_QUEUE_LIMIT": "5", "QPID_MGMT_PUB_INTERVAL": "250ms", "QPID_AUTH": "yes",
           "UNRELATED": "1"}
    o = parse([], env)
    assert (o.port, o.log_enable, o.data_dir, o.log_to_file) == (0, ["info+"], "/x", "f.log")
    assert (o.default_queue_limit, o.mgmt_pub_interval, o.auth) == (5, 0.25, True)
    for spec in OPTION_TABLE:
        assert spec.env_var == "QPID_" + spec.name.upper().replace("-", "_")


def test_environment_is_read_from_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("QPID_PORT", "5999")
    assert parse_options([], exit_on_error=False).port == 5999


# ---------------------------------------------------------------- value forms

@pytest.mark.parametrize("text,seconds", [
    ("0.1", 0.1), ("5", 5.0), (".5", 0.5), ("10s", 10.0), ("10ms", 0.01), ("10us", 1e-5), ("10ns", 1e-8),
    ("1.5ms", 0.0015), ("0", 0.0), (" 600 ", 600.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)
    assert parse(["--queue-purge-interval", text.strip()]).queue_purge_interval == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "-1", "10m", "1h", "10 s", "1e3", "s", "ms10"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)
    assert "--mgmt-pub-interval" in error_of(["--mgmt-pub-interval=" + text])


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["", "s", "ms", "us", "ns"]))
def test_duration_units_property(n, unit):
    scale = {"": 1, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[unit]
    assert parse_duration(f"{n}{unit}") == pytest.approx(n * scale)


def test_max_negotiate_time_is_milliseconds():
    assert parse(["--max-negotiate-time", "2500"]).max_negotiate_time == 2.5
    assert "--max-negotiate-time" in error_of(["--max-negotiate-time", "2s"])


@pytest.mark.parametrize("text,value", [
    ("yes", True), ("no", False), ("true", True), ("false", False), ("1", True), ("0", False),
    ("YES", True), ("False", False),
])
def test_booleans(text, value, tmp_path):
    assert parse_bool(text) is value
    assert parse(["--auth", text]).auth is value
    assert parse([], {"QPID_LOG_TIME": text}).log_time is value
    assert parse(["--config", write(tmp_path, f"enable-timestamp={text}\n")]).enable_timestamp is value


def test_boolean_without_value_means_yes():
    assert parse(["--auth"]).auth is True
    assert parse(["--log-time", "--port", "1"]).log_time is True
    assert parse(["-m", "no"]).mgmt_enable is False


@pytest.mark.parametrize("text", ["maybe", "2", "", "y"])
def test_bad_booleans(text):
    with pytest.raises(ValueError):
        parse_bool(text)
    message = error_of(["--log-to-stderr=" + text])
    assert "--log-to-stderr" in message and f"'{text}'" in message


def test_short_options():
    o = parse(["-p", "0", "-d"])
    assert o.port == 0 and o.daemon is True


# ---------------------------------------------------------------- errors

def test_unknown_option_on_command_line_exits_with_its_name(capsys):
    with pytest.raises(SystemExit) as info:
        parse_options(["--bogus"], env={})
    assert info.value.code != 0
    assert "qpidd: unrecognised option '--bogus'" in capsys.readouterr().err


def test_unknown_option_with_value_and_no_abbreviations():
    assert "'--bogus'" in error_of(["--bogus=1"])
    assert "'--por'" in error_of(["--por", "1"])  # no prefix matching
    assert "unexpected argument 'stray'" in error_of(["stray"])


def test_malformed_value_on_command_line_exits_with_name_and_value(capsys):
    with pytest.raises(SystemExit) as info:
        parse_options(["--port", "abc"], env={})
    assert info.value.code == 1
    assert "qpidd: invalid value for --port: 'abc'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,needle", [
    (["--port", "65536"], "--port"),
    (["--port=-1"], "--port"),
    (["--default-flow-stop-threshold", "101"], "--default-flow-stop-threshold"),
    (["--max-frame-size", "100"], "--max-frame-size"),
    (["--num-jfiles", "0"], "--num-jfiles"),
    (["--max-connections", "1.5"], "--max-connections"),
    (["--log-enable", "loud+"], "'loud+'"),
    (["--log-enable", "notice+", "--log-disable", "debug:"], "--log-disable"),
    (["--port"], "missing value for --port"),
])
def test_malformed_values(argv, needle):
    assert needle in error_of(argv)


def test_unknown_key_in_config_file_is_an_error(tmp_path):
    conf = write(tmp_path, "port=1\n# fine\nbogus-option=1\n")
    message = error_of(["--config", conf])
    assert "unrecognised option 'bogus-option'" in message and f"{conf}:3" in message


@pytest.mark.parametrize("text,needle", [
    ("port=abc\n", "invalid value for --port: 'abc'"),
    ("no-data-dir=perhaps\n", "--no-data-dir"),
    ("just words\n", "expected name=value"),
    ("port=1\nport=2\n", "given twice"),
    ("config=other.conf\n", "unrecognised option 'config'"),
    ("help=yes\n", "unrecognised option 'help'"),
])
def test_malformed_config_file(tmp_path, text, needle):
    message = error_of(["--config", write(tmp_path, text)])
    assert needle in message
    if "invalid value" in needle:
        assert "config file" in message


def test_missing_config_file_is_an_error(tmp_path):
    assert "nope.conf" in error_of(["--config", str(tmp_path / "nope.conf")])


@pytest.mark.parametrize("env,needle", [
    ({"QPID_PORT": "abc"}, "invalid value for --port: 'abc' (from environment variable QPID_PORT)"),
    ({"QPID_AUTH": "sure"}, "--auth"),
    ({"QPID_DAEMON": "sure"}, "--daemon"),
    ({"QPID_QUEUE_PURGE_INTERVAL": "10 minutes"}, "--queue-purge-interval"),
])
def test_malformed_environment_values(env, needle):
    assert needle in error_of([], env)


def test_help_and_version_exit_zero(capsys):
    for argv in (["--help"], ["-h"]):
        with pytest.raises(SystemExit) as info:
            parse_options(argv, env={})
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "--max-negotiate-time" in out and "--log-enable" in out
    with pytest.raises(SystemExit) as info:
        parse_options(["--version"], env={})
    assert info.value.code == 0
    assert "cypid" in capsys.readouterr().out
