# Deterministic synthetic snapshots (watchers/snapshot.py format, version 1) for benchmarks:
# networks and running containers shaped like Docker 20.10 inspect output, with every address in
# 127.0.0.0/8 so that a benchmark on loopback can send queries *from* a container's address
# (`dnsperf -a ADDR`) and get that container's view. Same arguments, same bytes (but taken_at).
#
#   python -m bench.synth --containers 10000 --networks 1000 [--aliases 1] --output FILE
#
# Shape: network i is `synth-n{i}` with subnet 127.16.0.0 + i * 2^h, /(32-h), h = 8 unless a
# network needs more room (so network i is 127.(16 + i//256).(i%256).0/24 by default); .1 is
# the gateway, containers get .2 on, and the last address below broadcast is never given out
# (a "network view" client). Container j is `synth-c{j}` on network j % M; every 4th also on a
# second network; K network aliases each (the first, `svc-{net}-{group}`, is shared by three
# replicas on one network, the others `{name}-a{k}` are its own); every 10th has a --hostname;
# every 50th declares links `db` and `cache` to two other containers of its first network.
#
# Manifest (written to FILE.manifest.json, or --manifest): what a benchmark needs to build
# query files without parsing the snapshot:
#   {"scopedns_synth_manifest": 1, "snapshot": "<file name>", "containers": N, "networks": M,
#    "aliases": K, "profiles": {<profile>: {"description": str, "qtype": "A" | "PTR",
#                                            "clients": [address, ...], "names": [name, ...]}}}
# Every name of a profile resolves (NOERROR with an answer, qtype) for every one of its
# clients. Profiles: "host" (127.0.0.1: every network), "container" (containers on network 0,
# from their network-0 address), "network" (an unknown address in network 0's subnet),
# "links" (link declarers: `db`, `cache`), "ptr" (127.0.0.1, reverse names of containers).
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import dns.reversename

from watchers.snapshot import snapshot_document, write_snapshot

LOOPBACK_BASE = IPv4Address("127.16.0.0")  # clear of 127.0.0.0/16 where servers listen
LOOPBACK_END = IPv4Address("127.255.255.255")
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # fixed, so the output is deterministic
MANIFEST_VERSION = 1
SAMPLE_NAMES = 500  # names per profile in the manifest
SAMPLE_CLIENTS = 50  # client addresses per profile


@dataclass
class Plan:
    """Which networks each container joins, and the addresses that follow from it."""

    containers: int
    networks: int
    aliases: int
    memberships: list[list[int]] = field(default_factory=list)  # container -> network indices
    host_bits: int = 8

    def __post_init__(self) -> None:
        counts = [0] * self.networks
        for j in range(self.containers):
            joined = [j % self.networks]
            if j % 4 == 3 and self.networks > 1:
                joined.append((j % self.networks + 1 + j // self.networks) % self.networks)
                if joined[1] == joined[0]:
                    joined.pop()
            for i in joined:
                counts[i] += 1
            self.memberships.append(joined)
        while 2 ** self.host_bits < max(counts, default=0) + 4:
            self.host_bits += 1
        last = int(LOOPBACK_BASE) + self.networks * 2 ** self.host_bits - 1
        if last > int(LOOPBACK_END):
            raise ValueError(f"{self.containers} containers on {self.networks} networks do not "
                             "fit in 127.16.0.0-127.255.255.255")

    def subnet(self, i: int) -> IPv4Network:
        start = IPv4Address(int(LOOPBACK_BASE) + i * 2 ** self.host_bits)
        return IPv4Network(f"{start}/{32 - self.host_bits}")


def _id(kind: str, index: int) -> str:
    return hashlib.sha256(f"scopedns-synth-{kind}-{index}".encode()).hexdigest()


def _time(offset_ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=offset_ms)).isoformat().replace("+00:00", "Z")


def network_name(i: int) -> str:
    return f"synth-n{i:04d}"


def container_name(j: int) -> str:
    return f"synth-c{j:05d}"


def network_json(plan: Plan, i: int) -> dict[str, Any]:
    subnet = plan.subnet(i)
    return {
        "Name": network_name(i), "Id": _id("network", i), "Created": _time(i),
        "Scope": "local", "Driver": "bridge", "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {},
                 "Config": [{"Subnet": str(subnet), "Gateway": str(subnet.network_address + 1)}]},
        "Internal": False, "Attachable": False, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {}, "Options": {},
        "Labels": {"scopedns.synth": "1"},
    }


@dataclass
class Layout:
    """Addresses and link targets, worked out once for all containers."""

    plan: Plan
    addresses: list[list[IPv4Address]] = field(default_factory=list)  # container -> per join
    members: list[list[int]] = field(default_factory=list)  # network -> containers, join order
    positions: list[int] = field(default_factory=list)  # container -> place on its first network

    def __post_init__(self) -> None:
        self.members = [[] for _ in range(self.plan.networks)]
        for j, joined in enumerate(self.plan.memberships):
            mine = []
            self.positions.append(len(self.members[joined[0]]))
            for i in joined:
                self.members[i].append(j)
                mine.append(self.plan.subnet(i).network_address + 1 + len(self.members[i]))
            self.addresses.append(mine)

    def link_targets(self, j: int) -> list[tuple[str, str]]:
        """(target, alias) links that container j declares on its first network."""
        if j % 50 != 1:
            return []
        others = [m for m in self.members[self.plan.memberships[j][0]] if m != j]
        return [(container_name(t), alias) for t, alias in zip(others, ("db", "cache"),
                                                               strict=False)]

    def aliases(self, j: int) -> list[str]:
        first = self.plan.memberships[j][0]
        group = self.positions[j] // 3
        names = [f"svc-{first:04d}-{group}"]
        names += [f"{container_name(j)}-a{k}" for k in range(1, self.plan.aliases)]
        return names[: self.plan.aliases]


def endpoint_json(layout: Layout, j: int, slot: int) -> dict[str, Any]:
    i = layout.plan.memberships[j][slot]
    address = layout.addresses[j][slot]
    primary = slot == 0
    links = [f"{target}:{alias}" for target, alias in layout.link_targets(j)] if primary else []
    return {
        "IPAMConfig": None, "Links": links or None,
        "Aliases": [*layout.aliases(j), _id("container", j)[:12]] if primary
        else [_id("container", j)[:12]],
        "NetworkID": _id("network", i), "EndpointID": _id(f"endpoint-{i}", j),
        "Gateway": str(layout.plan.subnet(i).network_address + 1), "IPAddress": str(address),
        "IPPrefixLen": 32 - layout.plan.host_bits, "IPv6Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "MacAddress": "02:42:" + ":".join(
            f"{b:02x}" for b in address.packed), "DriverOpts": None,
    }


def container_json(layout: Layout, j: int) -> dict[str, Any]:
    cid, name = _id("container", j), container_name(j)
    joined = layout.plan.memberships[j]
    links = [f"/{target}:/{name}/{alias}" for target, alias in layout.link_targets(j)]
    return {
        "Id": cid, "Created": _time(j * 10), "Name": f"/{name}",
        "State": {"Status": "running", "Running": True, "Paused": False, "Restarting": False,
                  "OOMKilled": False, "Dead": False, "Pid": 10_000 + j, "ExitCode": 0,
                  "StartedAt": _time(j * 10 + 5), "FinishedAt": "0001-01-01T00:00:00Z"},
        "Config": {"Hostname": f"host-{j}" if j % 10 == 0 else cid[:12],
                   "Image": "scopedns-busybox:test", "Cmd": ["sleep", "600"]},
        "HostConfig": {"NetworkMode": network_name(joined[0]), "Links": links or None,
                       "Dns": ["127.0.0.1"], "DnsOptions": []},
        "NetworkSettings": {"Networks": {network_name(i): endpoint_json(layout, j, slot)
                                         for slot, i in enumerate(joined)}},
    }


def synthesize(containers: int, networks: int, aliases: int = 1) -> tuple[Layout, dict[str, Any]]:
    """The layout and the snapshot document for N containers on M networks."""
    layout = Layout(Plan(containers, networks, aliases))
    document = snapshot_document((network_json(layout.plan, i) for i in range(networks)),
                                 (container_json(layout, j) for j in range(containers)),
                                 taken_at=EPOCH)
    return layout, document


# ----- manifest ------------------------------------------------------------------------------


def _spread(items: list[Any], count: int) -> list[Any]:
    """Up to `count` items spread evenly over `items` (deterministic)."""
    if len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[int(k * step)] for k in range(count)]


def _names_of(layout: Layout, j: int, network: int | None = None) -> Iterator[str]:
    """Names container j holds on `network` (default its first): aliases only on the first."""
    first = layout.plan.memberships[j][0]
    network = first if network is None else network
    name = container_name(j)
    yield name
    yield f"{name}.{network_name(network)}"
    if network == first:
        yield from layout.aliases(j)
    yield _id("container", j)[:12]
    if j % 10 == 0:
        yield f"host-{j}"


def manifest(layout: Layout, snapshot: str) -> dict[str, Any]:
    plan = layout.plan
    everyone = list(range(plan.containers))
    on_net0 = layout.members[0] if plan.networks else []
    net0_names = [n for j in on_net0 for n in _names_of(layout, j, 0)]
    declarers = [j for j in everyone if len(layout.link_targets(j)) == 2]
    first_address = {j: str(layout.addresses[j][0]) for j in everyone}
    net0_slot = {j: plan.memberships[j].index(0) for j in on_net0}
    profiles = {
        "host": ("127.0.0.1 (the host view): every network", "A", ["127.0.0.1"],
                 [n for j in _spread(everyone, SAMPLE_NAMES) for n in _names_of(layout, j)]),
        "container": ("containers on network 0, from their address there", "A",
                      [str(layout.addresses[j][net0_slot[j]]) for j in on_net0], net0_names),
        "network": ("an address in network 0 that no container holds: that network alone", "A",
                    [str(plan.subnet(0).broadcast_address - 1)] if plan.networks else [],
                    net0_names),
        "links": ("containers that declare link aliases db and cache", "A",
                  [first_address[j] for j in declarers], ["db", "cache"] if declarers else []),
        "ptr": ("127.0.0.1, reverse names of container addresses", "PTR", ["127.0.0.1"],
                [dns.reversename.from_address(first_address[j]).to_text(omit_final_dot=True)
                 for j in _spread(everyone, SAMPLE_NAMES)]),
    }
    return {
        "scopedns_synth_manifest": MANIFEST_VERSION, "snapshot": snapshot,
        "containers": plan.containers, "networks": plan.networks, "aliases": plan.aliases,
        "profiles": {key: {"description": text, "qtype": qtype,
                           "clients": _spread(clients, SAMPLE_CLIENTS),
                           "names": _spread(names, SAMPLE_NAMES)}
                     for key, (text, qtype, clients, names) in profiles.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.synth",
                                     description="write a synthetic scopedns snapshot")
    parser.add_argument("--containers", type=int, required=True)
    parser.add_argument("--networks", type=int, required=True)
    parser.add_argument("--aliases", type=int, default=1, help="network aliases per container")
    parser.add_argument("--output", required=True, help="snapshot file (- for stdout)")
    parser.add_argument("--manifest", help="default: OUTPUT.manifest.json (stdout: none)")
    args = parser.parse_args(argv)
    if args.containers < 0 or args.networks < 1 or args.aliases < 0:
        parser.error("--containers >= 0, --networks >= 1, --aliases >= 0")
    try:
        layout, document = synthesize(args.containers, args.networks, args.aliases)
    except ValueError as error:
        parser.error(str(error))
    write_snapshot(document, args.output, compact=True)
    target = args.manifest or (f"{args.output}.manifest.json" if args.output != "-" else None)
    if target:
        Path(target).write_text(json.dumps(manifest(layout, Path(args.output).name), indent=1))
        print(f"synth: {args.output} ({args.containers} containers, {args.networks} networks), "
              f"manifest {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
