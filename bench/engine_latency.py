# Engine latency on the real Docker engine: (1) how long after `docker run -d` returns scopedns
# answers the new container's name (the event -> inspect -> table path), and (2) how long a
# first sync takes with S containers already running. scopedns runs as a host process on
# loopback (host view, --no-upstream) following the default engine socket.
#
#   flock /tmp/scopedns-docker.lock python -m bench.engine_latency [--containers 100] [--sync 200]
#
# (1) N busybox containers are started one by one on one fresh network; after each `docker run
# -d` returns, the name is asked over UDP every 1 ms (bounded by --timeout) until it answers.
# (2) With S of them running, a fresh scopedns is started: times from its spawn to its
# "listening" and "docker: synced" log lines, and to answering every one of the S names.
# Progress goes to stderr, results as one JSON object to stdout. Everything created carries
# the prefix `ssnap-lat-` and is removed at the end, whatever happens. Callers hold the Docker
# lock (it is not taken here: a child taking it again would wait for its parent forever).
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rcode

from testkit.ports import free_port

DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")
IMAGE = "scopedns-busybox:test"
ENGINE_URL = "unix:///var/run/docker.sock"
REPO = Path(__file__).resolve().parent.parent
POLL_INTERVAL = 0.001  # one UDP query per millisecond while waiting for a name
START_TIMEOUT = 60.0  # scopedns start and first sync, however loaded the machine is


def progress(message: str) -> None:
    print(f"engine_latency: {message}", file=sys.stderr, flush=True)


class Scopedns:
    """A scopedns host process whose stderr lines are read (and time-stamped) by a thread."""

    def __init__(self, port: int) -> None:
        self.spawned = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "resolver", "serve", "--listen", f"127.0.0.1:{port}",
             "--no-upstream", "--docker", ENGINE_URL], cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append((time.monotonic(), line.rstrip()))
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> tuple[float, str]:
        """(time read, line) of the first log line matching `pattern`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for when, line in self.lines:
                    if re.search(pattern, line):
                        return when, line
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = "; ".join(line for _, line in self.lines[-3:])
                    raise RuntimeError(f"scopedns never logged {pattern!r}: {tail}")
                self._changed.wait(0.1)

    def warnings(self, limit: int = 5) -> list[str]:
        """Its first warning and error lines (reconnects and the like explain outliers)."""
        with self._changed:
            found = [line for _, line in self.lines if re.search(r" (WARNING|ERROR) ", line)]
        return found[:limit]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Prober:
    """Asks scopedns for A records over UDP: a query every POLL_INTERVAL while waiting for a
    name, and a reply counts whenever it arrives (a loaded server may take longer than that)."""

    def __init__(self, port: int) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.connect(("127.0.0.1", port))
        self.queries = 0

    def _send(self, name: str) -> int:
        self.queries += 1
        query = dns.message.make_query(name, "A")
        with contextlib.suppress(OSError):  # ICMP refused: nobody listens (yet)
            self._sock.send(query.to_wire())
        return int(query.id)

    def _receive(self, name: str, until: float, decisive_id: int | None = None) -> bool:
        """Wait until `until` for a reply about `name` holding an answer: True when one came.
        Replies about other names and garbage are skipped; so are negative replies, except the
        one to query `decisive_id`."""
        wanted = dns.name.from_text(name)
        while (left := until - time.monotonic()) > 0:
            self._sock.settimeout(left)
            try:
                reply = dns.message.from_wire(self._sock.recv(4096))
            except TimeoutError:
                return False
            except (OSError, dns.exception.DNSException):
                continue
            if reply.question and reply.question[0].name == wanted:
                if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                    return True
                if reply.id == decisive_id:
                    return False
        return False

    def answers(self, name: str, timeout: float = 2.0) -> bool:
        """One query: does `name` answer (within `timeout`)?"""
        query_id = self._send(name)
        return self._receive(name, time.monotonic() + timeout, decisive_id=query_id)

    def until_answered(self, name: str, bound: float) -> float | None:
        """Time (monotonic) at which a reply with an answer for `name` arrived, asking every
        POLL_INTERVAL; None after `bound` seconds."""
        now = time.monotonic()
        deadline = now + bound
        while now < deadline:
            self._send(name)
            next_send = max(now + POLL_INTERVAL, time.monotonic())
            if self._receive(name, min(next_send, deadline)):
                return time.monotonic()
            now = time.monotonic()
        return None

    def close(self) -> None:
        self._sock.close()


class Engine:
    """The docker CLI, remembering every object it made so that cleanup() removes them."""

    def __init__(self) -> None:
        self.prefix = f"ssnap-lat-{secrets.token_hex(3)}"
        self.network = f"{self.prefix}-net"
        self.containers: list[str] = []
        self.made_network = False

    def docker(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args[:3])}: {done.stderr.strip()}")
        return done.stdout.strip()

    def create_network(self) -> None:
        self.made_network = True
        self.docker("network", "create", self.network)

    def run(self, index: int) -> str:
        name = f"{self.prefix}-c{index:04d}"
        self.containers.append(name)
        self.docker("run", "-d", "--network", self.network, "--name", name, "--dns",
                    "127.0.0.1", IMAGE, "sleep", "900")
        return name

    def cleanup(self) -> None:
        leftovers = self.docker("ps", "-aq", "--filter", f"name={self.prefix}-")
        ids = leftovers.split()
        for start in range(0, len(ids), 50):
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.docker("rm", "-f", "-v", *ids[start:start + 50])
        if self.made_network:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.docker("network", "rm", self.network)
        progress(f"removed {len(ids)} containers and network {self.network}")


def summarize(samples_ms: list[float]) -> dict[str, Any]:
    ordered = sorted(samples_ms)

    def rank(q: float) -> float:  # nearest-rank percentile
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 2)

    if not ordered:
        return {"n": 0}
    return {"n": len(ordered), "p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99),
            "max": round(ordered[-1], 2), "mean": round(sum(ordered) / len(ordered), 2)}


def event_latency(engine: Engine, count: int, bound: float) -> dict[str, Any]:
    """Start `count` containers one by one with scopedns following the engine."""
    port = free_port()
    server = Scopedns(port)
    prober = Prober(port)
    latencies: list[float] = []
    runs: list[float] = []
    missed: list[str] = []
    first_try = 0  # names already answered by the first query after `docker run` returned
    try:
        server.wait_for(r"docker: synced")
        for index in range(count):
            began = time.monotonic()
            name = engine.run(index)
            returned = time.monotonic()
            asked = prober.queries
            answered = prober.until_answered(name, bound)
            first_try += prober.queries - asked == 1 and answered is not None
            runs.append((returned - began) * 1000)
            if answered is None:
                missed.append(name)
            else:
                latencies.append((answered - returned) * 1000)
            if (index + 1) % 10 == 0:
                latest = f"{latencies[-1]:.1f} ms" if latencies else "none answered"
                progress(f"{index + 1}/{count} started; latest {latest}")
    finally:
        prober.close()
        server.stop()
    return {"containers": count, "latency_ms": summarize(latencies), "not_answered": missed,
            "answered_by_first_query": first_try, "bound_s": bound,
            "docker_run_ms": summarize(runs), "queries": prober.queries,
            "scopedns_warnings": server.warnings()}


def first_sync(engine: Engine, running: int) -> dict[str, Any]:
    """A fresh scopedns with `running` of our containers up: how long until it answers."""
    while len(engine.containers) < running:
        engine.run(len(engine.containers))
        if len(engine.containers) % 20 == 0:
            progress(f"{len(engine.containers)}/{running} running for the sync test")
    names = engine.containers[:running]
    port = free_port()
    server = Scopedns(port)
    prober = Prober(port)
    try:
        listening, _ = server.wait_for(r"listening on 127\.0\.0\.1")
        synced, line = server.wait_for(r"docker: synced")
        first = prober.until_answered(names[-1], START_TIMEOUT)
        if first is None:
            raise RuntimeError(f"{names[-1]} never answered after the first sync")
        unanswered = [n for n in names if not prober.answers(n)]
        everyone = time.monotonic()
    finally:
        prober.close()
        server.stop()
    found = re.search(r"synced (\d+) networks, (\d+) running containers", line)
    return {
        "our_containers": running, "listening_ms": round((listening - server.spawned) * 1000),
        "engine_networks": int(found[1]) if found else None,
        "engine_containers": int(found[2]) if found else None,
        "synced_log_ms": round((synced - server.spawned) * 1000),
        "sync_after_listening_ms": round((synced - listening) * 1000),
        "first_answer_ms": round((first - server.spawned) * 1000),
        "all_checked_ms": round((everyone - server.spawned) * 1000),
        "not_answered_after_sync": unanswered, "scopedns_warnings": server.warnings(),
    }


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM behaves as Ctrl-C, so cleanup runs either way."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_latency",
                                     description="event and first-sync latency on the engine")
    parser.add_argument("--containers", type=int, default=100, help="started one by one")
    parser.add_argument("--sync", type=int, default=200, help="running at the first sync")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per name, at most")
    args = parser.parse_args(argv)
    engine = Engine()
    with terminate_as_interrupt():
        try:
            version = engine.docker("version", "--format", "{{.Server.Version}}")
            engine.docker("image", "inspect", IMAGE)
            engine.create_network()
            progress(f"engine {version}; {args.containers} containers on {engine.network}")
            events = event_latency(engine, args.containers, args.timeout)
            progress(f"event latency {events['latency_ms']}; now the first sync")
            sync = first_sync(engine, max(args.sync, 1))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            print(f"engine_latency: error: {error}", file=sys.stderr)
            return 1
        finally:
            engine.cleanup()
    print(json.dumps({"benchmark": "engine_latency", "engine": version, "cpus": os.cpu_count(),
                      "load_1m": os.getloadavg()[0], "poll_interval_ms": POLL_INTERVAL * 1000,
                      "event": events, "first_sync": sync}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
