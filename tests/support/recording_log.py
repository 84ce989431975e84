"""A logger stand-in for unit tests of broker modules that take a ``log``."""
import logging


class Log:
    """A logger stand-in that keeps (level, text) records."""

    def __init__(self):
        self.records = []

    def getChild(self, name):
        return self

    def log(self, level, fmt, *args):
        self.records.append((level, fmt % args))

    def info(self, fmt, *args):
        self.log(logging.INFO, fmt, *args)

    def warning(self, fmt, *args):
        self.log(logging.WARNING, fmt, *args)

    def error(self, fmt, *args):
        self.log(logging.ERROR, fmt, *args)

    def texts(self, level=None):
        return [t for lv, t in self.records if level is None or lv == level]
