"""Time from `docker run` of the scopedns image to its first answer (docs/deployment.md).

`python -m bench.image_start [--runs 5] [--image scopedns:latest]` (root, a Docker engine, dig,
the image from `make image`): on a fresh network with one busybox container, starts the image
as a sidecar at a fixed address and asks it for that container's name from the host
(dnspython, 50 ms per try, repeated) until the address comes back; prints each run, the
median and the image size. Everything it creates is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import time

import dns.exception
import dns.message
import dns.query

from tests.integration.harness import IMAGE, Engine, container_ip, docker


def ask(server: str, name: str) -> set[str]:
    """The A records `server` gives for `name`, asked from the host with a 50 ms wait."""
    try:
        reply = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=0.05)
    except (OSError, dns.exception.DNSException):
        return set()
    return {r.to_text() for rrset in reply.answer for r in rrset}


def one_run(engine: Engine, image: str, network: str, address: str, target: str,
            target_ip: str, index: int) -> float:
    name = engine.unique(f"side{index}")
    gid = str(os.stat("/var/run/docker.sock").st_gid)
    start = time.monotonic()
    docker("run", "-d", "--name", name, "--network", network, "--ip", address, "--group-add",
           gid, "-v", "/var/run/docker.sock:/var/run/docker.sock", image,
           "serve", "--no-upstream")
    engine.containers.append(name)
    deadline = start + 30
    while target_ip not in ask(address, target):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no answer in 30 s:\n{docker('logs', name, check=False)}")
    elapsed = time.monotonic() - start
    docker("rm", "-f", name)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default="scopedns:latest")
    args = parser.parse_args()
    engine = Engine(secrets.token_hex(3), "bench-start-")
    try:
        net = engine.network("net")
        target = engine.run("target", net.name, dns=net.gateway, command=["sleep", "600"])
        target_ip = container_ip(target.name, net.name)
        times = [one_run(engine, args.image, net.name, net.host(53), target.name, target_ip, i)
                 for i in range(args.runs)]
    finally:
        engine.cleanup()
    size = int(docker("image", "inspect", "-f", "{{.Size}}", args.image))
    print(json.dumps({"image": args.image, "image_size_mb": round(size / 1e6, 1),
                      "runs_s": [round(t, 3) for t in times],
                      "median_s": round(statistics.median(times), 3),
                      "client_image": IMAGE,
                      "engine": subprocess.run(["/usr/bin/docker", "version", "-f",
                                                "{{.Server.Version}}"], capture_output=True,
                                               text=True, check=False).stdout.strip()}))


if __name__ == "__main__":
    main()
