# In-memory benchmark of the sans-IO core (h11-style): parse -> view -> answer -> render for
# a local hit, with and without EDNS, and a miss that is handed to forwarding. Measures the
# handler alone, no sockets, in CPU time (time.process_time: other load on the machine does
# not count); the dnsperf comparison against peers is bench/profile.py. Repeated UDP queries
# are answered from the reply cache; TCP skips it, so "over TCP" shows the uncached path.
# Run: .venv/bin/python -m bench.bench_core
from __future__ import annotations

import time

import dns.message

from resolver.answer import Policy
from resolver.handler import Handler
from testkit.topology import Topology, attach, container, network

SOURCE = "172.50.0.200"
ROUNDS = 200_000


def build_handler(containers: int) -> Handler:
    net = network("benchnet", "172.50.0.0/16")
    members = [container(f"c{i}", attach(net, 1000 + i)) for i in range(containers)]
    topology = Topology([net], [container("client", attach(net, 200)), *members])
    return Handler(topology.table(), Policy())


def per_query_us(handler: Handler, wire: bytes, tcp: bool, rounds: int = ROUNDS) -> float:
    handler.handle(wire, SOURCE, tcp)
    began = time.process_time()
    for _ in range(rounds):
        handler.handle(wire, SOURCE, tcp)
    return (time.process_time() - began) / rounds * 1e6


def main() -> None:
    handler = build_handler(50)
    cases = {
        "local A, no EDNS": (dns.message.make_query("c7", "A"), False),
        "local A, EDNS": (dns.message.make_query("C7", "A", use_edns=0), False),
        "local AAAA NODATA, EDNS": (dns.message.make_query("c7", "AAAA", use_edns=0), False),
        "PTR": (dns.message.make_query("239.3.50.172.in-addr.arpa", "PTR"), False),
        "local A, EDNS, over TCP": (dns.message.make_query("C7", "A", use_edns=0), True),
        "miss (to forward)": (dns.message.make_query("nosuch.invalid", "A"), False),
    }
    for label, (query, tcp) in cases.items():
        us = per_query_us(handler, query.to_wire(), tcp)
        print(f"{label:28s} {us:6.2f} us/query", flush=True)


if __name__ == "__main__":
    main()
