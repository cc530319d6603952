# Health-change latency on the real Docker engine (docs/health.md): how long after the engine
# emits `health_status: unhealthy` (or `healthy`) for the first holder of a shared alias does
# scopedns answer the alias with the other holder (or with the first again).
#
#   flock /tmp/scopedns-docker.lock python -m bench.health_latency [--flips 20]
#
# Two busybox containers share the alias `db` on a fresh network, each with
# `--health-cmd 'test -f /ready' --health-interval 1s --health-retries 1`; scopedns (host view,
# --no-upstream, --alias-order first) follows the engine. Each flip removes (then recreates)
# /ready in the first holder with `docker exec`, then asks `db` over UDP every 1 ms until the
# answer changes. The latency of a flip is from the event's own time stamp (`timeNano`, read
# from `docker events`; the engine's clock is this host's clock) to the reply that shows the
# change. Results as one JSON object on stdout; everything made carries `ssnap-lat-` and is
# removed at the end.
from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import dns.exception
import dns.message

from bench.engine_latency import (
    DOCKER,
    IMAGE,
    Engine,
    Scopedns,
    progress,
    summarize,
    terminate_as_interrupt,
)
from testkit.ports import free_port

HEALTH = ("--health-cmd", "test -f /ready", "--health-interval", "1s", "--health-retries", "1",
          "--health-start-period", "60s")
FLIP_BOUND = 15.0  # seconds for one flip to show in answers, at most


class HealthEvents:
    """`docker events` for health_status, (container id, action, timeNano) on a queue."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [DOCKER, "events", "--filter", "type=container", "--filter", "event=health_status",
             "--format", "{{json .}}"], stdout=subprocess.PIPE, text=True)
        self.queue: queue.Queue[tuple[str, str, int, int]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            self.queue.put((event["Actor"]["ID"], event["Action"], int(event["timeNano"]),
                            time.time_ns()))

    def wait(self, container_id: str, action: str, timeout: float = FLIP_BOUND
             ) -> tuple[int, int]:
        """(engine time stamp, time `docker events` printed it) of the next such event."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            cid, got, when, seen = self.queue.get(timeout=left)
            if cid == container_id and got == action:
                return when, seen
        raise RuntimeError(f"no {action} event for {container_id[:12]}")

    def drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Asker:
    """One A query at a time over UDP; the reply's first address."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(1.0)

    def first_address(self, name: str) -> str | None:
        query = dns.message.make_query(name, "A")
        try:
            self.sock.send(query.to_wire())
            while True:
                reply = dns.message.from_wire(self.sock.recv(4096))
                if reply.id == query.id:
                    break
        except (OSError, dns.exception.DNSException):
            return None
        return next((rd.to_text() for rrset in reply.answer for rd in rrset), None)

    def until(self, name: str, address: str, bound: float) -> int | None:
        """Wall-clock ns when `name` first answered `address` (asking every 1 ms); None."""
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if self.first_address(name) == address:
                return time.time_ns()
            time.sleep(0.001)
        return None

    def close(self) -> None:
        self.sock.close()


def run_holders(engine: Engine, alias: str) -> tuple[str, str, str, str]:
    """(id, address) of the first and second holder of `alias`, both healthy."""
    made: list[tuple[str, str]] = []
    for index in range(2):
        name = f"{engine.prefix}-h{index}"
        engine.containers.append(name)
        cid = engine.docker("run", "-d", "--network", engine.network, "--name", name,
                            "--network-alias", alias, "--dns", "127.0.0.1", *HEALTH, IMAGE,
                            "sh", "-c", "touch /ready; exec sleep 900")
        address = engine.docker("inspect", "-f",
                                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", cid)
        made.append((cid, address))
        time.sleep(1.0)  # distinct start times: h0 registers first
    for cid, _ in made:
        deadline = time.monotonic() + FLIP_BOUND
        while engine.docker("inspect", "-f", "{{.State.Health.Status}}", cid) != "healthy":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cid[:12]} never became healthy")
            time.sleep(0.2)
    return made[0][0], made[0][1], made[1][0], made[1][1]


def measure(engine: Engine, flips: int) -> dict[str, Any]:
    port = free_port()
    server = Scopedns(port)
    asker = Asker(port)
    events = HealthEvents()
    samples: dict[str, list[float]] = {"unhealthy": [], "healthy": [], "cli": []}
    alias = f"{engine.prefix}-db"  # the host view sees every network: a name nobody else has
    try:
        server.wait_for(r"docker: synced")
        first, first_ip, _, second_ip = run_holders(engine, alias)
        if asker.until(alias, first_ip, FLIP_BOUND) is None:
            raise RuntimeError(f"{alias} never answered its first holder")
        for flip in range(flips):
            for status, command, expect in (("unhealthy", "rm -f /ready", second_ip),
                                            ("healthy", "touch /ready", first_ip)):
                events.drain()
                engine.docker("exec", first, "sh", "-c", command)
                answered = asker.until(alias, expect, FLIP_BOUND)
                emitted, printed = events.wait(first, f"health_status: {status}")
                if answered is None:
                    raise RuntimeError(f"flip {flip}: {alias} never answered {expect}")
                samples[status].append((answered - emitted) / 1e6)
                samples["cli"].append((printed - emitted) / 1e6)
            progress(f"{flip + 1}/{flips} flips; latest {samples['healthy'][-1]:.1f} ms")
    finally:
        events.stop()
        asker.close()
        server.stop()
    both = samples["unhealthy"] + samples["healthy"]
    return {"flips": flips, "latency_ms": summarize(both),
            "to_unhealthy_ms": summarize(samples["unhealthy"]),
            "to_healthy_ms": summarize(samples["healthy"]),
            # For scale: the same events reaching the `docker events` CLI.
            "docker_events_cli_ms": summarize(samples["cli"]),
            "scopedns_warnings": server.warnings()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.health_latency",
                                     description="health_status event to answer latency")
    parser.add_argument("--flips", type=int, default=20, help="unhealthy+healthy round trips")
    args = parser.parse_args(argv)
    engine = Engine()
    with terminate_as_interrupt():
        try:
            version = engine.docker("version", "--format", "{{.Server.Version}}")
            engine.create_network()
            result = measure(engine, max(args.flips, 1))
        except (RuntimeError, OSError, subprocess.TimeoutExpired, queue.Empty) as error:
            print(f"health_latency: error: {error}", file=sys.stderr)
            return 1
        finally:
            engine.cleanup()
    print(json.dumps({"benchmark": "health_latency", "engine": version, "cpus": os.cpu_count(),
                      "load_1m": os.getloadavg()[0], **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
