# Random topologies for the differential test (test_differential.py): from a seed, networks
# (the first plain, the others two distinct of plain / --internal / dual-stack), containers with
# --network-alias, --hostname, --link and extra networks, then random changes (stop, start,
# rename, connect, disconnect), built on the real engine through the lab, and removed again.
from __future__ import annotations

import random
from dataclasses import dataclass, field

from .conftest import Lab
from .harness import docker, ula_subnet

ALIAS_WORDS = ("web", "db", "cache", "api.v1")  # few, so that holders of one alias collide
LINK_WORDS = ("lnk", "peer", "web", "db")  # a link alias may shadow a network alias
CREATED_ONLY = 0.15  # share of containers created but not started (from the third on)


@dataclass
class Box:
    name: str
    first: str  # the network it was started on; its --dns is that network's gateway
    networks: list[str]
    hostname: str | None = None
    running: bool = True
    old_names: list[str] = field(default_factory=list)


@dataclass
class Topology:
    seed: int
    kinds: dict[str, str] = field(default_factory=dict)  # network -> plain | internal | dual
    boxes: list[Box] = field(default_factory=list)
    aliases: set[str] = field(default_factory=set)
    link_aliases: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)  # what was done, as docker commands

    def act(self, *args: str) -> None:
        self.log.append("docker " + " ".join(args))
        docker(*args)


def build(lab: Lab, topo: Topology) -> None:
    rng = random.Random(topo.seed)
    count = rng.randint(2, 3)
    for index, kind in enumerate(["plain", *rng.sample(["plain", "internal", "dual"], count - 1)]):
        options = {"plain": [], "internal": ["--internal"],
                   "dual": ["--ipv6", "--subnet", ula_subnet()]}[kind]
        net = lab.add_network(f"s{topo.seed}-{rng.choice('nN')}{index}", options=options)
        topo.kinds[net.name] = kind
        topo.log.append(f"docker network create --subnet {net.subnet} {' '.join(options)} "
                        f"{net.name}")
    for index in range(rng.randint(4, 7)):
        add_box(lab, rng, topo, index)
    for step in range(rng.randint(2, 4)):
        change(lab, rng, topo, step)


def add_box(lab: Lab, rng: random.Random, topo: Topology, index: int) -> None:
    first = rng.choice(sorted(topo.kinds))
    options: list[str] = []
    hostname = None
    if rng.random() < 0.5:
        options += ["--network-alias", pick(rng, ALIAS_WORDS, topo.aliases)]
    if rng.random() < 0.3:
        hostname = f"host{index}-{lab.engine.run_id}"
        options += ["--hostname", hostname]
    if topo.boxes and rng.random() < 0.5:
        options += ["--link", link(rng, topo, exclude=None)]
    start = index < 2 or rng.random() >= CREATED_ONLY  # two clients at least
    made = lab.engine.run(f"s{topo.seed}-{rng.choice('cC')}{index}", first, *options,
                          dns=lab.networks[first].gateway, start=start)
    box = Box(made.name, first, [first], hostname, running=start)
    topo.log.append(f"docker {'run -d' if start else 'create'} --name {box.name} --network "
                    f"{first} --dns <gateway> {' '.join(options)}")
    topo.boxes.append(box)
    for net in sorted(topo.kinds):
        if net != first and rng.random() < 0.4:
            connect(rng, topo, box, net)


def pick(rng: random.Random, words: tuple[str, ...], used: set[str]) -> str:
    word = rng.choice(words)
    used.add(word)
    return word


def link(rng: random.Random, topo: Topology, exclude: Box | None) -> str:
    """`target:alias`; the target is another container's name, or an alias (Docker resolves
    a link target as any name on the declaring network)."""
    targets = [b.name for b in topo.boxes if b is not exclude]
    target = rng.choice(ALIAS_WORDS[:2] if rng.random() < 0.2 else targets)
    return f"{target}:{pick(rng, LINK_WORDS, topo.link_aliases)}"


def connect(rng: random.Random, topo: Topology, box: Box, net: str) -> None:
    options: list[str] = []
    if rng.random() < 0.5:
        options += ["--alias", pick(rng, ALIAS_WORDS, topo.aliases)]
    if len(topo.boxes) > 1 and rng.random() < 0.3:
        options += ["--link", link(rng, topo, exclude=box)]
    topo.act("network", "connect", *options, net, box.name)
    box.networks.append(net)


def change(lab: Lab, rng: random.Random, topo: Topology, step: int) -> None:
    """One random change; at least two containers stay running (the clients)."""
    running = [b for b in topo.boxes if b.running]
    kinds = ["rename"]
    kinds += ["stop"] * (len(running) > 2) + ["start"] * any(not b.running for b in topo.boxes)
    kinds += ["disconnect"] * any(len(b.networks) > 1 for b in running)
    kinds += ["connect"] * any(len(b.networks) < len(topo.kinds) for b in running)
    kind = rng.choice(kinds)
    if kind == "rename":
        box = rng.choice(topo.boxes)
        new = lab.engine.unique(f"s{topo.seed}-r{step}")
        lab.engine.containers.append(new)
        topo.act("rename", box.name, new)
        box.old_names.append(box.name)
        box.name = new
    elif kind in ("stop", "start"):
        box = rng.choice([b for b in topo.boxes if b.running == (kind == "stop")])
        topo.act(kind, *(["-t", "0"] if kind == "stop" else []), box.name)
        box.running = kind == "start"
    elif kind == "disconnect":
        box = rng.choice([b for b in running if len(b.networks) > 1])
        net = rng.choice([n for n in box.networks if n != box.first])  # keep its --dns reachable
        topo.act("network", "disconnect", net, box.name)
        box.networks.remove(net)
    else:
        box = rng.choice([b for b in running if len(b.networks) < len(topo.kinds)])
        connect(rng, topo, box, rng.choice([n for n in topo.kinds if n not in box.networks]))


def dismantle(lab: Lab, topo: Topology) -> None:
    """Remove the topology's containers and networks (the lab's cleanup catches leftovers)."""
    if topo.boxes:
        docker("rm", "-f", "-v", *(box.name for box in topo.boxes), check=False)
    for net in topo.kinds:
        if lab.sidecar is not None:
            docker("network", "disconnect", "-f", net, lab.sidecar.name, check=False)
        lab.procs.stop(f"oracle-{net}")
        lab.engine.networks.remove(net)
        lab.networks.pop(net, None)
    if topo.kinds:
        docker("network", "rm", *topo.kinds, check=False)
