# Log output (docs/operations.md): `--log-format text|json` for every logger, and the query log
# (`--log-queries`): one line per query with client, view, name, type, rcode and how it was
# answered, at most QUERY_LINES_PER_SECOND a second, then one line saying how many were
# suppressed. JSON lines come from the standard library (one small Formatter): no dependency
# for a dozen lines, and the fields are ours to name.
from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any

import dns.rcode
import dns.rdatatype

from resolver.stats import HOW_LABELS
from resolver.table import NameTable

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Enough to follow a few clients by eye; a flood costs a counter increment per query.
QUERY_LINES_PER_SECOND = 50
# LogRecord's own attributes: whatever else a record carries came from `extra=` and is a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, component (the logger), message,
    then the record's extra fields, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "component": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """Root logging to stderr in the chosen format (replacing any earlier configuration)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def question(data: bytes) -> tuple[str, str] | None:
    """(name, type) of a query's first question, or None when it cannot be read."""
    labels: list[str] = []
    offset = 12
    while offset < len(data):
        length = data[offset]
        if length == 0:
            if offset + 3 > len(data):
                return None
            qtype = int.from_bytes(data[offset + 1 : offset + 3], "big")
            name = ".".join(labels) + "."
            return name, dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))
        if length & 0xC0:
            return None
        labels.append(data[offset + 1 : offset + 1 + length].decode("ascii", "backslashreplace"))
        offset += 1 + length
    return None


class QueryLog:
    """A QueryStats observer that logs queries, rate-limited."""

    def __init__(self, table: NameTable, per_second: int = QUERY_LINES_PER_SECOND,
                 clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger | None = None) -> None:
        self._table = table
        self._per_second = per_second
        self._clock = clock
        self._log = logger or logging.getLogger("resolver.queries")
        self._window_end = 0.0
        self._lines = 0
        self._held = 0
        self.suppressed = 0  # lines held back in all (a metric)

    def __call__(self, data: bytes, source: str, tcp: bool, reply: bytes | None,
                 how: int) -> None:
        now = self._clock()
        if now >= self._window_end:
            self._flush()
            self._window_end, self._lines = now + 1.0, 0
        if self._lines >= self._per_second:
            self._held += 1
            self.suppressed += 1
            return
        self._lines += 1
        self._line(data, source, tcp, reply, how)

    def _flush(self) -> None:
        if self._held:
            self._log.info("query log: %d lines suppressed (at most %d a second)", self._held,
                           self._per_second, extra={"suppressed": self._held})
            self._held = 0

    def _line(self, data: bytes, source: str, tcp: bool, reply: bytes | None, how: int) -> None:
        asked = question(data)
        name, qtype = asked if asked is not None else ("?", "?")
        rcode = ("none" if reply is None or len(reply) < 4
                 else dns.rcode.to_text(dns.rcode.Rcode.make(reply[3] & 0x0F)))
        # `name` and `type` would clash with LogRecord's own attributes: qname, qtype.
        fields = {"client": source, "view": self._view(source), "qname": name, "qtype": qtype,
                  "rcode": rcode, "how": HOW_LABELS[how], "transport": "tcp" if tcp else "udp"}
        self._log.info("query %(client)s [%(view)s] %(qname)s %(qtype)s: %(rcode)s "
                       "(%(how)s, %(transport)s)", fields, extra=fields)

    def _view(self, source: str) -> str:
        try:
            view = self._table.view_for(ip_address(source.split("%", 1)[0]))
        except ValueError:
            return "none"
        if view is None:
            return "none"
        kind, _, ident = view.key.partition(":")
        if kind == "c":
            container = self._table.container(ident)
            return f"container {container.name}" if container is not None else view.key
        if kind == "n":
            network = next((n for n in self._table.networks if n.id == ident), None)
            return f"network {network.name}" if network is not None else view.key
        return "host"
