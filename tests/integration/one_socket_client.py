"""A DNS client that keeps ONE UDP socket for all its queries (as c-ares or nginx's resolver
do), for the takeover tests: run inside a container's network namespace with `nsenter`, it asks
127.0.0.11:53 for NAME every INTERVAL seconds from the same source port and prints one JSON line
per query: {"n": i, "ttl": TTL of the first answer or null, "answers": count, "error": ...}.
It stops after --count queries. Nothing leaves the namespace.

`python -m tests.integration.one_socket_client --name app --count 100 --interval 0.1`
"""

from __future__ import annotations

import argparse
import json
import socket
import time

import dns.message
import dns.rdatatype


def ask_forever(name: str, count: int, interval: float) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.11", 53))
        sock.settimeout(0.5)
        for n in range(count):
            query = dns.message.make_query(name, dns.rdatatype.A)
            line: dict[str, object] = {"n": n, "port": sock.getsockname()[1]}
            try:
                sock.send(query.to_wire())
                reply = dns.message.from_wire(sock.recv(4096))
                line["answers"] = sum(len(rrset) for rrset in reply.answer)
                line["ttl"] = reply.answer[0].ttl if reply.answer else None
            except (OSError, dns.exception.DNSException) as error:
                line["error"] = type(error).__name__
            print(json.dumps(line), flush=True)
            time.sleep(interval)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    print("READY", flush=True)
    ask_forever(args.name, args.count, args.interval)
