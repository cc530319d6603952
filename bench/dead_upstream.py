# What a dead first upstream costs (docs/forwarding-cache.md): scopedns on loopback with two
# upstreams, the first a UDP port that swallows every datagram (no reply, no ICMP: a server that
# is down behind a firewall), the second the suite's fake upstream. Sequential queries for
# distinct `*.invalid` names (no cache can answer them) and each one's latency as the client
# sees it. Loopback only; bounded by --queries and the server's per-try timeout.
# Run: python -m bench.dead_upstream [--queries 30] [--timeout 1] [--server CMD] [ARG ...]
# (--server "python -m resolver" with PYTHONPATH at another checkout measures that code.)
from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode

from bench.suite.facts import synthesize
from bench.suite.names import endpoints
from bench.suite.procs import Cleanup, start, wait_answering
from bench.suite.stats import percentile
from testkit.ports import free_port

FIRST_FEW = 5  # queries that may pay a timeout before the upstream is known to be down


def ask(port: int, name: str) -> tuple[float, str]:
    query = dns.message.make_query(name, "A")
    began = time.monotonic()
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=10)
    return time.monotonic() - began, dns.rcode.to_text(reply.rcode())


def measure(args: argparse.Namespace, workdir: Path, cleanup: Cleanup) -> dict[str, Any]:
    snapshot = synthesize(2, 1, workdir)
    local = endpoints(json.loads(snapshot.read_text()))[0].container
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never read
    blackhole.bind(("127.0.0.1", 0))
    cleanup.push("close the blackhole", blackhole.close)
    fake = free_port()
    start([sys.executable, "-m", "bench.suite.fake_upstream", "--port", str(fake)], cleanup,
          workdir / "fake-upstream.log")
    wait_answering(fake, "ready.bench.invalid", 30.0)
    port = free_port()
    argv = [*args.server.split(), "serve", "--snapshot", str(snapshot),
            "--listen", f"127.0.0.1:{port}", "--upstream",
            f"127.0.0.1:{blackhole.getsockname()[1]}", "--upstream", f"127.0.0.1:{fake}",
            "--upstream-timeout", f"{args.timeout:g}", "--log-level", "warning", *args.extra]
    server = start(argv, cleanup, workdir / "server.log")
    wait_answering(port, local, 60.0, server)
    latencies, rcodes = [], []
    for index in range(args.queries):
        seconds, rcode = ask(port, f"dead{index}.bench.invalid")
        latencies.append(seconds * 1000)
        rcodes.append(rcode)
    after = latencies[FIRST_FEW:]
    return {"benchmark": "dead_upstream", "server": args.server, "extra": args.extra,
            "upstream_timeout_s": args.timeout, "queries": args.queries,
            "rcodes": {code: rcodes.count(code) for code in set(rcodes)},
            "total_s": round(sum(latencies) / 1000, 2),
            "latency_ms": [round(value, 2) for value in latencies],
            "slow_queries": sum(1 for value in latencies if value > args.timeout * 500),
            f"after_first_{FIRST_FEW}": {
                "p50_ms": round(statistics.median(after), 2) if after else None,
                "p99_ms": round(percentile(after, 0.99), 2) if after else None,
                "max_ms": round(max(after), 2) if after else None}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=1.0, help="--upstream-timeout (s)")
    parser.add_argument("--server", default=".venv/bin/scopedns")
    parser.add_argument("extra", nargs="*", help="more server flags")
    args = parser.parse_args()
    cleanup = Cleanup()
    try:
        with tempfile.TemporaryDirectory(prefix="sbench-dead-") as directory:
            try:
                print(json.dumps(measure(args, Path(directory), cleanup), indent=2))
            finally:
                cleanup.run()
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
