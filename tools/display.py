"""Table output shared by the tools: qpidtoollibs' Display layout and cell formats.

* A title line; if there are no rows, nothing else.
* Column width = max(len(header), longest cell) + 2; the header and rows are the prefix then each
  cell left-justified to its width (the last column unpadded); the separator is the prefix and
  ``=`` x width for every column (the whole line cut at 255 characters).
* Cell formats: NONE, Y (``Y`` or empty), YN, COMMAS (1,234,567), DURATION (ns -> ``1d 2h 3m 4s``),
  TIME_LONG (``%c``), TIME_SHORT (``%X``), KMG (``1.23k`` / ``45.6m`` / `` 123g``). None -> empty,
  a value that does not fit its format -> ``?``.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence

NONE, Y, YN, COMMAS, DURATION, TIME_LONG, TIME_SHORT, KMG = (
    "none", "Y", "YN", "commas", "duration", "time_long", "time_short", "kmg")


def fmt_y(value) -> str:
    return "Y" if value else ""


def fmt_yn(value) -> str:
    return "Y" if value else "N"


def fmt_commas(value) -> str:
    return "{:,}".format(int(value))


def fmt_duration(ns) -> str:
    """nanoseconds -> ``[Nd ][Nh ][Nm ]Ns`` (leading zero units left out; negative -> ``0s``)."""
    seconds = int(ns) // 1_000_000_000
    if seconds < 0:
        seconds = 0
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if days:
        out += "%dd " % days
    if days or hours:
        out += "%dh " % hours
    if days or hours or minutes:
        out += "%dm " % minutes
    return out + "%ds" % secs


def fmt_time_long(ns) -> str:
    return time.strftime("%c", time.gmtime(int(ns) / 1e9))


def fmt_time_short(ns) -> str:
    return time.strftime("%X", time.gmtime(int(ns) / 1e9))


def fmt_kmg(value) -> str:
    value = int(value)
    if value < 1000:
        return "%4d" % value
    scaled = float(value)
    for suffix in "kmgtp":
        scaled /= 1000.0
        if scaled < 1000.0 or suffix == "p":
            break
    if scaled < 10:
        return "%1.2f%s" % (scaled, suffix)
    if scaled < 100:
        return "%2.1f%s" % (scaled, suffix)
    return "%4d%s" % (int(scaled), suffix)


FORMATTERS: dict[str, Callable[[Any], str]] = {
    Y: fmt_y, YN: fmt_yn, COMMAS: fmt_commas, DURATION: fmt_duration, TIME_LONG: fmt_time_long,
    TIME_SHORT: fmt_time_short, KMG: fmt_kmg,
}


def format_cell(value, fmt: str = NONE) -> str:
    if value is None:
        return ""
    if fmt in (NONE, None):
        return value if isinstance(value, str) else str(value)
    try:
        return FORMATTERS[fmt](value)
    except (TypeError, ValueError, OverflowError, KeyError):
        return "?"


class Header:
    def __init__(self, text: str, fmt: str = NONE):
        self.text = text
        self.format = fmt

    def __repr__(self) -> str:
        return "Header(%r, %r)" % (self.text, self.format)


class Sorter:
    """Sort rows by the column headed ``column`` (descending unless ``increasing``), keep ``limit``."""

    def __init__(self, heads: Sequence[Header | str], rows: list[list], column: str,
                 limit: int = 0, increasing: bool = False):
        names = [h.text if isinstance(h, Header) else h for h in heads]
        if column not in names:
            raise ValueError("sortCol '%s', not found in headers" % column)
        index = names.index(column)

        def key(row):
            v = row[index]
            # Numbers before text, None last whatever the direction.
            if v is None:
                return (0 if not increasing else 2, 0, "")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return (1, v, "")
            return (1, 0, str(v)) if not isinstance(v, bool) else (1, int(v), "")

        self.rows = sorted(rows, key=key, reverse=not increasing)
        if limit:
            self.rows = self.rows[:limit]

    def get_sorted(self) -> list[list]:
        return self.rows


class Display:
    def __init__(self, prefix: str = "  ", out: Callable[[str], None] | None = None,
                 max_width: int = 255):
        self.prefix = prefix
        self.out = out or print
        self.max_width = max_width

    def table_lines(self, title: str | None, heads: Sequence[Header | str], rows: Iterable[Sequence]) -> list[str]:
        heads = [h if isinstance(h, Header) else Header(h) for h in heads]
        lines = [] if title is None else [title]
        cells = [[format_cell(row[i] if i < len(row) else None, heads[i].format) for i in range(len(heads))]
                 for row in rows]
        if not cells:
            return lines
        widths = []
        for i, h in enumerate(heads):
            width = len(h.text)
            for row in cells:
                width = max(width, len(row[i]))
            widths.append(width + 2)

        def line(values):
            parts = [v.ljust(widths[i]) for i, v in enumerate(values[:-1])]
            return (self.prefix + "".join(parts) + values[-1]).rstrip() if values else self.prefix.rstrip()

        lines.append(line([h.text for h in heads]))
        lines.append((self.prefix + "".join("=" * w for w in widths))[: self.max_width])
        for row in cells:
            lines.append(line(row))
        return lines

    def table(self, title: str | None, heads: Sequence[Header | str], rows: Iterable[Sequence]) -> None:
        for text in self.table_lines(title, heads, rows):
            self.out(text)


def duration_text(ns) -> str:
    return fmt_duration(ns)
