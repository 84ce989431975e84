"""Logging as qpidd does it: levels, ``--log-enable``/``--log-disable`` rules and its line layout.

    2026-11-25 10:00:00 [Broker] notice Listening on TCP port 5672

``setup_logging(options, name="qpidd") -> logging.Logger`` configures one logger, ``name``, and
nothing else (no root logger, no global level names), so two brokers can log independently in one
process. Parts of the broker log through children named after qpidd's categories:
``logger.getChild("Network").log(NOTICE, ...)`` prints ``[Network]``; records of the logger itself
print ``[Broker]``; ``extra={"category": "X"}`` overrides both.

Rules (qpidd syntax): ``LEVEL[+|-][:PATTERN]``. ``notice+`` is notice and above, ``debug-`` debug and
below, ``info`` info only. PATTERN limits the rule to a category (``Broker``, ``Network``,
``Protocol``, ``Store``, ``Management``, ``Security``, ``HA``, ... any case) or to records whose
logger name, module or function contains it. A record is written when some enable rule matches it and
no disable rule does. No enable rule means ``notice+``.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterable, TextIO

#: qpidd's levels. NOTICE sits between INFO and WARNING; TRACE below DEBUG.
TRACE = 5
DEBUG = logging.DEBUG
INFO = logging.INFO
NOTICE = 25
WARNING = logging.WARNING
ERROR = logging.ERROR
CRITICAL = logging.CRITICAL

LEVELS: dict[str, int] = {
    "trace": TRACE, "debug": DEBUG, "info": INFO, "notice": NOTICE,
    "warning": WARNING, "error": ERROR, "critical": CRITICAL,
}
_NAMES_BY_LEVEL = sorted((value, name) for name, value in LEVELS.items())

DEFAULT_CATEGORY = "Broker"
DEFAULT_RULE = "notice+"


def level_name(levelno: int) -> str:
    """qpidd's name for a level (a level between two named ones takes the lower's name)."""
    name = "trace"
    for value, candidate in _NAMES_BY_LEVEL:
        if levelno >= value:
            name = candidate
    return name


@dataclass(frozen=True)
class Rule:
    level: int
    direction: str  # "+": this level and above, "-": this level and below, "": only this level
    pattern: str | None = None

    def matches(self, levelno: int, category: str, record: logging.LogRecord) -> bool:
        if self.direction == "+":
            if levelno < self.level:
                return False
        elif self.direction == "-":
            if levelno > self.level:
                return False
        elif level_name(levelno) != level_name(self.level):
            return False
        if self.pattern is None:
            return True
        if self.pattern.lower() == category.lower():
            return True
        return any(self.pattern in text for text in (record.name, record.module, record.funcName) if text)


def parse_rule(text: str) -> Rule:
    """Parse ``LEVEL[+|-][:PATTERN]``; ValueError (naming the rule) if malformed."""
    spec, _, pattern = text.strip().partition(":")
    direction = ""
    if spec.endswith(("+", "-")):
        spec, direction = spec[:-1], spec[-1]
    level = LEVELS.get(spec.strip().lower())
    if level is None:
        raise ValueError(f"bad log rule {text!r}: level must be one of {', '.join(LEVELS)}")
    pattern = pattern.strip()
    if _ and not pattern:
        raise ValueError(f"bad log rule {text!r}: empty pattern after ':'")
    return Rule(level, direction, pattern or None)


class RuleFilter(logging.Filter):
    """Passes a record when an enable rule matches and no disable rule does."""

    def __init__(self, enable: Iterable[str], disable: Iterable[str] = (), base: str = ""):
        super().__init__()
        self.enable = [parse_rule(r) for r in enable] or [parse_rule(DEFAULT_RULE)]
        self.disable = [parse_rule(r) for r in disable]
        self.base = base

    @property
    def min_level(self) -> int:
        """The lowest level any enable rule can pass (the logger's level, so that
        ``isEnabledFor`` stays cheap on the hot path)."""
        return min(TRACE if r.direction == "-" else r.level for r in self.enable)

    def filter(self, record: logging.LogRecord) -> bool:
        category = record_category(record, self.base)
        levelno = record.levelno
        return (any(r.matches(levelno, category, record) for r in self.enable)
                and not any(r.matches(levelno, category, record) for r in self.disable))


def record_category(record: logging.LogRecord, base: str) -> str:
    """``extra={"category": ...}``, else the first name below ``base``, else ``Broker``."""
    category = getattr(record, "category", None)
    if category:
        return str(category)
    name = record.name
    if base and name.startswith(base + "."):
        return name[len(base) + 1:].split(".", 1)[0]
    return DEFAULT_CATEGORY


class QpiddFormatter(logging.Formatter):
    """``[time ][[Category] ][level ]text`` with qpidd's level names; tracebacks follow."""

    def __init__(self, base: str = "", show_time: bool = True, show_category: bool = True,
                 show_level: bool = True):
        super().__init__()
        self.base = base
        self.show_time = show_time
        self.show_category = show_category
        self.show_level = show_level

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        if self.show_time:
            parts.append(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created)))
        if self.show_category:
            parts.append(f"[{record_category(record, self.base)}]")
        if self.show_level:
            parts.append(level_name(record.levelno))
        parts.append(record.getMessage())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class _Handler:
    """Marks handlers installed by setup_logging so that a second call replaces them."""


class _StreamHandler(logging.StreamHandler, _Handler):
    pass


class _FileHandler(logging.FileHandler, _Handler):
    pass


def setup_logging(options: Any, name: str = "qpidd", *, stream: TextIO | None = None) -> logging.Logger:
    """Configure and return the logger ``name`` from ``options`` (an Options: log_enable,
    log_disable, log_to_stderr, log_to_file, log_time, log_level, log_category; missing attributes
    take qpidd's defaults). ``stream`` replaces stderr (tests). Calling it again for the same name
    replaces the handlers it installed before. ValueError on a malformed rule."""
    enable = list(getattr(options, "log_enable", None) or [DEFAULT_RULE])
    disable = list(getattr(options, "log_disable", None) or [])
    rule_filter = RuleFilter(enable, disable, base=name)
    formatter = QpiddFormatter(
        base=name,
        show_time=getattr(options, "log_time", True),
        show_category=getattr(options, "log_category", True),
        show_level=getattr(options, "log_level", True),
    )
    logger = logging.getLogger(name)
    close_logging(logger)
    logger.propagate = False
    logger.setLevel(rule_filter.min_level)
    handlers: list[logging.Handler] = []
    if getattr(options, "log_to_stderr", True):
        handlers.append(_StreamHandler(stream if stream is not None else sys.stderr))
    log_file = getattr(options, "log_to_file", None)
    if log_file:
        directory = os.path.dirname(os.path.abspath(log_file))
        os.makedirs(directory, exist_ok=True)
        handlers.append(_FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(rule_filter)
        logger.addHandler(handler)
    return logger


def close_logging(logger: logging.Logger) -> None:
    """Remove and close the handlers setup_logging installed on ``logger`` (e.g. at shutdown)."""
    for handler in list(logger.handlers):
        if isinstance(handler, _Handler):
            logger.removeHandler(handler)
            handler.close()


__all__ = ["TRACE", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "LEVELS", "Rule",
           "RuleFilter", "QpiddFormatter", "parse_rule", "level_name", "record_category",
           "setup_logging", "close_logging"]
