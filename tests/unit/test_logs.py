"""broker/logs.py: qpidd's levels, log rules and line layout, per-broker loggers."""
import io
import logging
import re

import pytest

from cypid.broker.logs import (
    DEBUG,
    INFO,
    NOTICE,
    TRACE,
    WARNING,
    close_logging,
    level_name,
    parse_rule,
    setup_logging,
)
from cypid.broker.options import Options, parse_options

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[(\w+)\] (\w+) (.*)$")


def configure(*argv, name="test-broker"):
    stream = io.StringIO()
    options = parse_options(list(argv), env={}, exit_on_error=False)
    logger = setup_logging(options, name, stream=stream)
    return logger, stream


def lines(stream):
    return stream.getvalue().splitlines()


def test_notice_is_between_info_and_warning():
    assert INFO < NOTICE < WARNING and TRACE < DEBUG
    assert level_name(NOTICE) == "notice" and level_name(TRACE) == "trace"
    assert level_name(logging.WARNING) == "warning" and level_name(logging.CRITICAL) == "critical"


def test_line_layout():
    logger, stream = configure()
    logger.log(NOTICE, "Listening on TCP port %d", 5672)
    (line,) = lines(stream)
    assert LINE.match(line).groups() == ("Broker", "notice", "Listening on TCP port 5672")


def test_default_is_notice_and_above():
    logger, stream = configure()
    logger.info("hidden")
    logger.log(NOTICE, "shown")
    logger.error("also shown")
    assert [LINE.match(x).group(3) for x in lines(stream)] == ["shown", "also shown"]
    assert not logger.isEnabledFor(INFO)


def test_category_from_child_logger_and_extra():
    logger, stream = configure()
    logger.getChild("Network").getChild("conn1").warning("w")
    logger.log(NOTICE, "x", extra={"category": "Store"})
    assert [LINE.match(x).group(1) for x in lines(stream)] == ["Network", "Store"]


def test_enable_rules_with_patterns_and_disable():
    logger, stream = configure("--log-enable", "debug+:Network", "--log-enable", "warning+",
                               "--log-disable", "error:Store")
    assert logger.isEnabledFor(DEBUG)
    net, store = logger.getChild("Network"), logger.getChild("Store")
    net.debug("net debug")
    store.debug("store debug")
    logger.log(NOTICE, "broker notice")
    store.error("store error")
    store.critical("store critical")
    assert [LINE.match(x).group(3) for x in lines(stream)] == ["net debug", "store critical"]


def test_minus_and_exact_rules():
    logger, stream = configure("--log-enable", "info-", "--log-enable", "error")
    for level in (TRACE, DEBUG, INFO, NOTICE, WARNING, logging.ERROR, logging.CRITICAL):
        logger.log(level, level_name(level))
    assert [LINE.match(x).group(2) for x in lines(stream)] == ["trace", "debug", "info", "error"]


def test_format_switches():
    logger, stream = configure("--log-time", "no", "--log-category", "no")
    logger.log(NOTICE, "hello")
    assert lines(stream) == ["notice hello"]
    logger, stream = configure("--log-time", "no", "--log-level", "no")
    logger.log(NOTICE, "hello")
    assert lines(stream) == ["[Broker] hello"]


def test_exception_traceback_follows():
    logger, stream = configure()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")
    text = stream.getvalue()
    assert "error failed" in text and "RuntimeError: boom" in text


def test_two_brokers_in_one_process_log_apart():
    a, sa = configure(name="broker-a")
    b, sb = configure("--log-enable", "debug+", name="broker-b")
    a.log(NOTICE, "from a")
    b.debug("from b")
    a.debug("a debug hidden")
    assert [LINE.match(x).group(3) for x in lines(sa)] == ["from a"]
    assert [LINE.match(x).group(3) for x in lines(sb)] == ["from b"]
    assert a.propagate is False


def test_root_logger_untouched():
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    configure()
    assert (list(root.handlers), root.level) == before


def test_reconfigure_replaces_handlers_and_close():
    logger, _ = configure(name="again")
    logger, stream = configure(name="again")
    logger.log(NOTICE, "once")
    assert len(lines(stream)) == 1
    assert len(logger.handlers) == 1
    close_logging(logger)
    assert logger.handlers == []


def test_log_to_file_and_not_stderr(tmp_path):
    path = tmp_path / "sub" / "qpidd.log"
    stream = io.StringIO()
    options = Options(log_to_stderr=False, log_to_file=str(path))
    logger = setup_logging(options, "file-broker", stream=stream)
    logger.log(NOTICE, "to file")
    close_logging(logger)
    assert stream.getvalue() == ""
    assert LINE.match(path.read_text().strip()).group(3) == "to file"


@pytest.mark.parametrize("text", ["loud", "notice+:", "+", "", "notice*"])
def test_bad_rules(text):
    with pytest.raises(ValueError):
        parse_rule(text)


def test_rule_parsing():
    rule = parse_rule("debug+:Broker")
    assert (rule.level, rule.direction, rule.pattern) == (DEBUG, "+", "Broker")
    assert parse_rule("NOTICE").direction == ""
