# In-memory benchmark of the sans-IO core (h11-style): parse -> view -> answer -> render for
# a local hit, with and without EDNS, and a miss that is handed to forwarding. Measures the
# handler alone, no sockets; the dnsperf comparison against peers lives beside it.
# Run: .venv/bin/python -m bench.bench_core
from __future__ import annotations

import time

import dns.message

from resolver.answer import Policy
from resolver.handler import Handler
from tests.topology import Topology, attach, container, network

SOURCE = "172.50.0.200"
ROUNDS = 200_000


def build_handler(containers: int) -> Handler:
    net = network("benchnet", "172.50.0.0/16")
    members = [container(f"c{i}", attach(net, 1000 + i)) for i in range(containers)]
    topology = Topology([net], [container("client", attach(net, 200)), *members])
    return Handler(topology.table(), Policy())


def per_query_us(handler: Handler, wire: bytes, rounds: int = ROUNDS) -> float:
    handler.handle(wire, SOURCE, False)
    began = time.perf_counter()
    for _ in range(rounds):
        handler.handle(wire, SOURCE, False)
    return (time.perf_counter() - began) / rounds * 1e6


def main() -> None:
    handler = build_handler(50)
    cases = {
        "local A, no EDNS": dns.message.make_query("c7", "A"),
        "local A, EDNS": dns.message.make_query("C7", "A", use_edns=0),
        "local AAAA NODATA, EDNS": dns.message.make_query("c7", "AAAA", use_edns=0),
        "PTR": dns.message.make_query("1.236.50.172.in-addr.arpa", "PTR"),
        "miss (to forward)": dns.message.make_query("nosuch.invalid", "A"),
    }
    for label, query in cases.items():
        print(f"{label:28s} {per_query_us(handler, query.to_wire()):6.2f} us/query", flush=True)


if __name__ == "__main__":
    main()
