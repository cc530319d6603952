# In-memory benchmark of the sans-IO core (h11-style): parse -> view -> answer -> render for
# a local hit, with and without EDNS, and a miss that is handed to forwarding. Measures the
# handler alone, no sockets, in CPU time (time.process_time: other load on the machine does
# not count); the dnsperf comparison against peers is bench/profile.py. Repeated UDP queries
# are answered from the reply cache; TCP skips it, so "over TCP" shows the uncached path.
# With --stats, each case also runs with query counting on (--http, docs/operations.md),
# interleaved, and prints both medians.
# Run: .venv/bin/python -m bench.bench_core [--stats] [--repeat N]
from __future__ import annotations

import argparse
import statistics
import time

import dns.message

from resolver.answer import Policy
from resolver.handler import Handler
from resolver.stats import QueryStats
from testkit.topology import Topology, attach, container, network

SOURCE = "172.50.0.200"
ROUNDS = 200_000


def build_handler(containers: int, stats: QueryStats | None = None) -> Handler:
    net = network("benchnet", "172.50.0.0/16")
    members = [container(f"c{i}", attach(net, 1000 + i)) for i in range(containers)]
    topology = Topology([net], [container("client", attach(net, 200)), *members])
    return Handler(topology.table(), Policy(), None, None, stats)


def per_query_us(handler: Handler, wire: bytes, tcp: bool, rounds: int = ROUNDS) -> float:
    handler.handle(wire, SOURCE, tcp)
    began = time.process_time()
    for _ in range(rounds):
        handler.handle(wire, SOURCE, tcp)
    return (time.process_time() - began) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description="in-memory handler benchmark")
    parser.add_argument("--stats", action="store_true", help="also with query counting on")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds per case")
    args = parser.parse_args()
    variants = {"": build_handler(50)}
    if args.stats:
        variants["counted"] = build_handler(50, QueryStats())
    cases = {
        "local A, no EDNS": (dns.message.make_query("c7", "A"), False),
        "local A, EDNS": (dns.message.make_query("C7", "A", use_edns=0), False),
        "local AAAA NODATA, EDNS": (dns.message.make_query("c7", "AAAA", use_edns=0), False),
        "PTR": (dns.message.make_query("239.3.50.172.in-addr.arpa", "PTR"), False),
        "local A, EDNS, over TCP": (dns.message.make_query("C7", "A", use_edns=0), True),
        "miss (to forward)": (dns.message.make_query("nosuch.invalid", "A"), False),
    }
    for label, (query, tcp) in cases.items():
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, handler in variants.items():
                times[name].append(per_query_us(handler, query.to_wire(), tcp))
        shown = "  ".join(f"{name or 'plain'} {statistics.median(t):6.2f} "
                          f"({min(t):.2f}-{max(t):.2f})" for name, t in times.items())
        print(f"{label:28s} {shown} us/query", flush=True)


if __name__ == "__main__":
    main()
