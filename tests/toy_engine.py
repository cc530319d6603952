# The toy Docker engine of the isolation property test (test_isolation_property.py): networks
# and containers (stopped ones included) as plain records, the docker commands the histories
# run on them, each logging the events the engine emits for it, in the engine's order
# (EngineEvent). The reference model reads running containers as records (`info`);
# tests/docker_json.py writes the same state as inspect JSON for tests/memory_engine.py, which
# the real watcher reads. Also who asks (`clients`) and what (`questions`).
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from resolver.model import ContainerInfo, EndpointInfo, LinkAlias, NetworkInfo, ServicePort
from tests.reference_model import EngineEvent

HOSTS = range(2, 12)  # host numbers the toy engine hands out on a network
NETWORK_VIEW_HOST = 250  # never handed out: a client the events have not delivered yet
STRANGERS = ("10.255.0.1", "fd99::1")
HOST_VIEW = "127.0.0.1"
# Services a toy container may offer: port numbers (exposed) and names (labels).
SERVICE_POOL = (ServicePort("80", "tcp", 80), ServicePort("53", "udp", 53),
                ServicePort("web", "tcp", 8080))
SERVICE_ASKED = (("80", "tcp"), ("53", "udp"), ("web", "tcp"), ("80", "udp"))
BRIDGE = NetworkInfo("net-bridge", "bridge", (ip_network("172.17.0.0/16"),), user_defined=False)


@dataclass
class Plan:
    """How a container is attached to one network (kept while it is stopped)."""

    host: int
    aliases: tuple[str, ...] = ()
    links: tuple[LinkAlias, ...] = ()


@dataclass
class SimContainer:
    id: str
    name: str
    hostname: str | None
    created_at: str
    plans: dict[str, Plan] = field(default_factory=dict)  # network id -> plan
    left: dict[str, Plan] = field(default_factory=dict)  # plans of networks it disconnected
    started_at: str = ""
    running: bool = False
    health: str | None = None  # None: no healthcheck; else starting, healthy or unhealthy
    services: tuple[ServicePort, ...] = ()


class Engine:
    """A toy Docker engine: what it holds, the events it emitted, and the records `docker
    inspect` would give."""

    def __init__(self) -> None:
        self.networks: dict[str, NetworkInfo] = {BRIDGE.id: BRIDGE}
        self.containers: dict[str, SimContainer] = {}
        self.log: list[EngineEvent] = []
        self.clock = 0
        self.created = 0
        self.ever_networks: list[NetworkInfo] = [BRIDGE]
        self.ever_names: set[str] = set()
        self.ever_addresses: set[str] = set()

    def tick(self) -> str:
        """A coarse clock (two events a second), so start and creation times sometimes tie."""
        self.clock += 1
        return f"2026-01-01T00:{self.clock // 120:02d}:{self.clock // 2 % 60:02d}Z"

    def _emit(self, kind: str, action: str, actor: str, container: str = "") -> None:
        self.log.append(EngineEvent(kind, action, actor, container))

    # ----- docker network create / rm ---------------------------------------------------------

    def new_network(self, name: str, internal: bool, dual: bool) -> NetworkInfo:
        self.created += 1
        n = self.created
        subnets = [ip_network(f"172.{20 + n}.0.0/24")]
        if dual:
            subnets.append(ip_network(f"fd00:{n:x}::/64"))
        network = NetworkInfo(f"net{n}", name, tuple(subnets), internal, dual)
        self.networks[network.id] = network
        self.ever_networks.append(network)
        self._emit("network", "create", network.id)
        return network

    def remove_network(self, network_id: str) -> None:
        """`docker network disconnect` for every running container on it, then `rm`; stopped
        containers forget it."""
        for sim in self.running():
            if network_id in sim.plans:
                self.disconnect(sim, network_id)
        del self.networks[network_id]
        for sim in self.containers.values():
            sim.plans.pop(network_id, None)
            sim.left.pop(network_id, None)
        self._emit("network", "destroy", network_id)

    # ----- docker create / start / stop / restart / rm / rename ------------------------------

    def new_container(self, name: str, hostname: str | None) -> SimContainer:
        self.created += 1
        cid = hashlib.sha256(f"c{self.created}".encode()).hexdigest()
        sim = SimContainer(cid, name, hostname, self.tick())
        self.containers[cid] = sim
        self.ever_names.update({name, cid[:12], *([hostname] if hostname else [])})
        self._emit("container", "create", cid)
        return sim

    def start(self, sim: SimContainer, new_address: bool) -> None:
        """The endpoints connect (the address may change), then the container starts."""
        if sim.health is not None:
            sim.health = "starting"  # the engine starts every healthcheck over
        for nid, plan in sim.plans.items():
            plan.host = self.free_host(nid, 0 if new_address else plan.host)
            self._emit("network", "connect", nid, sim.id)
        sim.running, sim.started_at = True, self.tick()
        self._emit("container", "start", sim.id)

    def stop(self, sim: SimContainer) -> None:
        sim.running = False
        self._emit("container", "kill", sim.id)
        self._emit("container", "die", sim.id)
        for nid in sim.plans:
            self._emit("network", "disconnect", nid, sim.id)
        self._emit("container", "stop", sim.id)

    def restart(self, sim: SimContainer, new_address: bool) -> None:
        self.stop(sim)
        self.start(sim, new_address)
        self._emit("container", "restart", sim.id)

    def remove(self, sim: SimContainer) -> None:
        del self.containers[sim.id]
        self._emit("container", "destroy", sim.id)

    def rename(self, sim: SimContainer, name: str) -> None:
        sim.name = name
        self.ever_names.add(name)
        self._emit("container", "rename", sim.id)

    def late(self, index: int) -> None:
        """Event `index` of the log is delivered again, late, stamped as it was."""
        self.log.append(replace(self.log[index], again=index))

    def health_changes(self, sim: SimContainer, status: str) -> None:
        sim.health = status
        self._emit("container", f"health_status: {status}", sim.id)

    # ----- docker network connect / disconnect -----------------------------------------------

    def connect(self, sim: SimContainer, network_id: str, plan: Plan) -> None:
        plan.host = self.free_host(network_id, plan.host)
        sim.plans[network_id] = plan
        self._emit("network", "connect", network_id, sim.id)

    def disconnect(self, sim: SimContainer, network_id: str) -> None:
        sim.left[network_id] = sim.plans.pop(network_id)
        self._emit("network", "disconnect", network_id, sim.id)

    # ----- what it holds ------------------------------------------------------------------------

    def free_host(self, network_id: str, wanted: int) -> int:
        """`wanted` if no running container holds it on the network, else the lowest free."""
        taken = {c.plans[network_id].host for c in self.running() if network_id in c.plans}
        free = [h for h in HOSTS if h not in taken]
        return wanted if wanted in free else free[0]

    def running(self) -> list[SimContainer]:
        return [c for c in self.containers.values() if c.running]

    def stopped(self) -> list[SimContainer]:
        return [c for c in self.containers.values() if not c.running]

    def container(self, container_id: str) -> ContainerInfo | None:
        """What an inspect says now: the running container's record, or None."""
        sim = self.containers.get(container_id)
        return self.info(sim) if sim is not None and sim.running else None

    def network(self, network_id: str) -> NetworkInfo | None:
        return self.networks.get(network_id)

    def listing(self) -> tuple[list[NetworkInfo], list[ContainerInfo]]:
        """A full listing: every network and every running container."""
        return list(self.networks.values()), [self.info(c) for c in self.running()]

    def info(self, sim: SimContainer) -> ContainerInfo:
        endpoints = tuple(self.endpoint(nid, plan) for nid, plan in sim.plans.items())
        return ContainerInfo(sim.id, sim.name, sim.hostname, endpoints,
                             started_at=sim.started_at, created_at=sim.created_at,
                             ready=sim.health not in ("starting", "unhealthy"),
                             services=sim.services)

    def endpoint(self, network_id: str, plan: Plan) -> EndpointInfo:
        network = self.networks[network_id]
        v4 = next(s for s in network.subnets if s.version == 4)
        ipv4 = IPv4Address(int(v4.network_address) + plan.host)
        ipv6 = None
        if network.ipv6:
            v6 = next(s for s in network.subnets if s.version == 6)
            ipv6 = IPv6Address(int(v6.network_address) + plan.host)
        self.ever_names.update(plan.aliases)
        self.ever_names.update(x for link in plan.links for x in (link.alias, link.target))
        self.ever_addresses.update(str(a) for a in (ipv4, ipv6) if a is not None)
        return EndpointInfo(network_id, ipv4, ipv6, plan.aliases, plan.links)

    # ----- who asks, and what -------------------------------------------------------------------

    def clients(self) -> list[str]:
        """Every address ever handed out (current ones are container views, old ones network
        views), an unused address of every network, strangers, and the host."""
        near = [str(ip_address(int(s.network_address) + NETWORK_VIEW_HOST))
                for n in self.ever_networks for s in n.subnets]
        return sorted(self.ever_addresses) + near + [*STRANGERS, HOST_VIEW]

    def questions(self) -> list[tuple[str, str, bool]]:
        """(qname, qtype, also on the wire): every name ever seen as spelled and in swapped case,
        `name.network` for every network ever seen, a missing name, and every address's PTR name."""
        names = sorted(self.ever_names | {"missing"})
        suffixes = [n.name for n in self.ever_networks if n.user_defined]
        asked = [(q, "A", True) for q in names] + [(q, "AAAA", False) for q in names]
        # Case and splits do not depend on the address family: A only for these.
        asked += [(q.swapcase(), "A", False) for q in names]
        asked += [(f"{q}.{s.swapcase() if i % 2 else s}", "A", False) for q in names
                  for i, s in enumerate(suffixes)]
        for address in sorted(self.ever_addresses):
            pointer = ip_address(address).reverse_pointer
            asked += [(pointer, "PTR", True), (pointer.upper(), "PTR", False)]
        return asked + self.service_questions(names, suffixes)

    @staticmethod
    def service_questions(names: list[str], suffixes: list[str]) -> list[tuple[str, str, bool]]:
        """SRV for every service of SERVICE_POOL under every name (and under `name.network` for
        the first network), other types at a service name, the `_<proto>.<name>` node."""
        asked: list[tuple[str, str, bool]] = []
        for q in names:
            asked += [(f"_{svc}._{proto}.{q}", "SRV", True) for svc, proto in SERVICE_ASKED]
            asked += [(f"_80._tcp.{q}", "TXT", False), (f"_TCP.{q}", "A", False)]
            asked += [(f"_80._tcp.{q}.{s}", "SRV", False) for s in suffixes[:2]]
        return asked
