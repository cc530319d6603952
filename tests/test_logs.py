# Log output (resolver/logs.py): JSON lines that parse one by one with the fields we promise,
# and the query log, which names client, view, name, type, rcode and how, and stays bounded
# under load: a real server (`scopedns serve --log-format json --log-queries`) under 20,000
# queries logs at most its per-second budget, and says how many lines it held back.
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import dns.message
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from resolver.logs import QUERY_LINES_PER_SECOND, JsonFormatter, QueryLog, question
from resolver.stats import How
from testkit.ports import free_port
from testkit.topology import Topology, attach, container, network

NET = network("lognet", "172.62.0.0/24")
TOPOLOGY = Topology([NET], [container("web", attach(NET, 2))])
REPO = Path(__file__).resolve().parents[1]


def test_json_lines_carry_time_level_component_message_and_fields() -> None:
    record = logging.makeLogRecord({"name": "watchers.docker", "levelno": logging.WARNING,
                                    "levelname": "WARNING", "msg": "lost %s",
                                    "args": ("engine",), "reason": "refused"})
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning" and entry["component"] == "watchers.docker"
    assert entry["message"] == "lost engine" and entry["reason"] == "refused"
    assert entry["time"].endswith("+00:00")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_query_log_names_everything_and_holds_back_past_its_budget(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    query_log = QueryLog(TOPOLOGY.table(), per_second=3, clock=clock)
    data = dns.message.make_query("Web", "AAAA").to_wire()
    reply = data[:2] + b"\x81\x80" + data[4:]
    with caplog.at_level(logging.INFO, logger="resolver.queries"):
        for _ in range(10):
            query_log(data, "172.62.0.2", False, reply, How.FAST)
        clock.now += 1.0
        query_log(data, "192.0.2.1", True, None, How.REFUSED)
    lines = [r for r in caplog.records if "qname" in r.__dict__]
    assert len(lines) == 4 and query_log.suppressed == 7
    first = lines[0].__dict__
    assert (first["client"], first["view"], first["qname"], first["qtype"], first["rcode"],
            first["how"], first["transport"]) == ("172.62.0.2", "container web", "Web.",
                                                  "AAAA", "NOERROR", "fast", "udp")
    assert lines[-1].__dict__["view"] == "none" and lines[-1].__dict__["rcode"] == "none"
    held = [r for r in caplog.records if "suppressed" in r.getMessage()]
    assert len(held) == 1 and held[0].__dict__["suppressed"] == 7


def test_question_reader_survives_garbage() -> None:
    assert question(b"\x00" * 5) is None
    assert question(b"\x00" * 12 + b"\x03abc") is None
    assert question(dns.message.make_query("a.b", "MX").to_wire()) == ("a.b.", "MX")


LOAD = 20_000
BATCH = 200


def test_query_log_stays_bounded_under_load(tmp_path: Path) -> None:
    """20,000 queries, 200 at a time as fast as one socket sends them: the log holds at most
    its budget per second, and the lines written plus those it says it held back add up to
    the queries the server counted (/metrics)."""
    dns_port, http_port = free_port(), free_port()
    log_path = tmp_path / "scopedns.log"
    argv = [sys.executable, "-m", "resolver", "serve", "--listen", f"127.0.0.1:{dns_port}",
            "--http", f"127.0.0.1:{http_port}", "--no-upstream", "--docker",
            "unix:///nonexistent/docker.sock", "--log-format", "json", "--log-queries"]
    with log_path.open("w") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for(lambda: "listening on" in log_path.read_text(), "the server to listen")
        started = time.monotonic()
        blast(dns_port, LOAD)
        time.sleep(1.1)
        blast(dns_port, 1)  # opens a new second: the held-back count is logged
        elapsed = time.monotonic() - started
        time.sleep(0.3)
        counted = sum(s.value for f in scrape(http_port) for s in f.samples
                      if s.name == "scopedns_queries_total")
    finally:
        server.terminate()
        server.wait(10)
    entries = [json.loads(line) for line in log_path.read_text().splitlines()]
    queries = [e for e in entries if "qname" in e]
    held = sum(e.get("suppressed", 0) for e in entries)
    assert len(queries) <= QUERY_LINES_PER_SECOND * (int(elapsed) + 2), (len(queries), elapsed)
    assert counted > LOAD // 2  # loopback loses little; not a performance claim
    assert len(queries) + held == counted
    assert {e["rcode"] for e in queries} == {"SERVFAIL"}  # never synced: no engine there


def blast(port: int, count: int) -> None:
    """Send `count` queries in batches, reading what replies came back after each (so the
    client's own buffer never overflows); at most 30 s in all."""
    query = dns.message.make_query("web", "A").to_wire()
    deadline = time.monotonic() + 30
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.settimeout(0.2)
        sent = 0
        while sent < count and time.monotonic() < deadline:
            batch = min(BATCH, count - sent)
            for _ in range(batch):
                sock.send(query)
            sent += batch
            for _ in range(batch):
                try:
                    sock.recv(512)
                except TimeoutError:
                    break


def scrape(port: int) -> list[Metric]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return list(text_string_to_metric_families(response.read().decode()))


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)
