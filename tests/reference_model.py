# A reference model of docs/ for the property tests (health and SRV included): a plain record
# of the world (networks, running containers, one registration number per (container, network,
# name)) and an answer function that scans all of it for every question, straight from the
# docs' words. Written for clarity, not speed; it shares no logic with resolver.table or
# resolver.views (records from resolver.model are only its inputs), so the two can be compared.
# Also a toy engine (Engine) that plays Docker's side: containers, stopped ones included, and
# their inspect records.
from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from resolver.model import (
    ContainerInfo,
    EndpointInfo,
    EngineState,
    LinkAlias,
    NetworkInfo,
    ServicePort,
)

# docs/views.md: the default --host-view-from.
HOST_VIEW_FROM = (ip_network("127.0.0.0/8"), ip_network("::1/128"))
RegistrationKey = tuple[str, str, str]  # (container id, network id, lower-case name)
HOSTS = range(2, 12)  # host numbers the toy engine hands out on a network
NETWORK_VIEW_HOST = 250  # never handed out: a client the events have not delivered yet
STRANGERS = ("10.255.0.1", "fd99::1")
HOST_VIEW = "127.0.0.1"
# Services a toy container may offer: port numbers (exposed) and names (labels).
SERVICE_POOL = (ServicePort("80", "tcp", 80), ServicePort("53", "udp", 53),
                ServicePort("web", "tcp", 8080))
SERVICE_ASKED = (("80", "tcp"), ("53", "udp"), ("web", "tcp"), ("80", "udp"))
BRIDGE = NetworkInfo("net-bridge", "bridge", (ip_network("172.17.0.0/16"),), user_defined=False)


@dataclass(frozen=True)
class Expected:
    """What a client gets: an rcode (or FORWARD, "asked upstream") and the answer records as
    text, in order (addresses, or one PTR target)."""

    rcode: str
    records: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeenNetwork:
    """One network of a view, with the link aliases the client declared on it
    (lower-case alias -> lower-case target)."""

    network: NetworkInfo
    links: tuple[tuple[str, str], ...] = ()

    def link_target(self, alias: str) -> str | None:
        return dict(self.links).get(alias)


@dataclass(frozen=True)
class ModelView:
    networks: tuple[SeenNetwork, ...]
    may_forward: bool


@dataclass(frozen=True)
class Holding:
    """A container's endpoint holding a name on a network, with its registration number."""

    number: int
    container: ContainerInfo
    endpoint: EndpointInfo


def names_of(container: ContainerInfo) -> set[str]:
    """docs/names.md: the container name, its 12-character short ID and its hostname (lower-case);
    network aliases are per endpoint (see endpoint_names)."""
    names = {container.name.lower(), container.id[:12].lower()}
    if container.hostname:
        names.add(container.hostname.lower())
    return names


def endpoint_names(container: ContainerInfo, endpoint: EndpointInfo) -> set[str]:
    return names_of(container) | {alias.lower() for alias in endpoint.aliases}


def docker_order(network: NetworkInfo) -> tuple[bool, int, str]:
    """docs/views.md, "Endpoint order" (Docker's Endpoint.Less): internal networks last;
    then more gateway families first (an internal network has no gateway, so dual-stack counts
    only for non-internal ones); then by name, byte order."""
    gateways = 0 if network.internal else (2 if network.ipv6 else 1)
    return (network.internal, -gateways, network.name)


class ReferenceModel:
    """The world as the engine reports it, and what docs/views.md says each client gets."""

    def __init__(self) -> None:
        self.networks: dict[str, NetworkInfo] = {}
        self.containers: dict[str, ContainerInfo] = {}  # running ones only
        self.registered: dict[RegistrationKey, int] = {}
        self._counter = 0

    # ----- the world changes -----------------------------------------------------------------

    def network_created(self, network: NetworkInfo) -> None:
        self.networks[network.id] = network

    def network_removed(self, network_id: str) -> None:
        """The network is gone: every endpoint on it leaves with it."""
        self.networks.pop(network_id, None)
        for cid, container in list(self.containers.items()):
            kept = tuple(e for e in container.endpoints if e.network_id != network_id)
            self.containers[cid] = replace(container, endpoints=kept)
        self._forget(lambda key: key[1] == network_id)

    def container_is(self, container: ContainerInfo) -> None:
        """A running container as it is now (start, connect, disconnect, rename). A name that
        first appears on a network for it takes the next registration number; one it no
        longer has there is dropped (docs/order.md: leaves, joins at the end when back)."""
        self.containers[container.id] = container
        now = self._keys(container)
        self._forget(lambda key: key[0] == container.id and key not in now)
        for key in sorted(now):
            if key not in self.registered:
                self._counter += 1
                self.registered[key] = self._counter

    def container_stopped(self, container_id: str) -> None:
        self.containers.pop(container_id, None)
        self._forget(lambda key: key[0] == container_id)

    def resynced(self, networks: Iterable[NetworkInfo],
                 containers: Iterable[ContainerInfo]) -> None:
        """docs/failures.md: a full sync with the engine (first sync, or a reconnect): the table
        becomes what the engine lists and drops what vanished. What persisted keeps its place;
        a container whose start time changed restarted unseen and rejoins at the end; what is
        new joins at the end, in restart order (README "Several holders of one name")."""
        listed = {c.id: c for c in containers}
        for cid, known in list(self.containers.items()):
            now = listed.get(cid)
            if now is None or now.started_at != known.started_at:
                self.container_stopped(cid)
        self.networks = {n.id: n for n in networks}
        for container in restart_order(listed.values()):
            self.container_is(container)

    def _keys(self, container: ContainerInfo) -> set[RegistrationKey]:
        return {(container.id, ep.network_id, name)
                for ep in container.endpoints for name in endpoint_names(container, ep)}

    def _forget(self, dropped: Callable[[RegistrationKey], bool]) -> None:
        self.registered = {k: v for k, v in self.registered.items() if not dropped(k)}

    # ----- who is asking (docs/views.md) -------------------------------------------------------

    def view(self, client: str) -> ModelView | None:
        source = ip_address(client)
        for container in self.containers.values():
            if any(source in ep.addresses for ep in container.endpoints):
                return self._container_view(container)
        for network in self.user_networks():
            if any(source in subnet for subnet in network.subnets):
                return ModelView((SeenNetwork(network),), not network.internal)
        if any(source.version == net.version and source in net for net in HOST_VIEW_FROM):
            return ModelView(tuple(SeenNetwork(n) for n in self.user_networks()), True)
        return None

    def user_networks(self) -> list[NetworkInfo]:
        return sorted((n for n in self.networks.values() if n.user_defined), key=docker_order)

    def _container_view(self, container: ContainerInfo) -> ModelView:
        seen: list[SeenNetwork] = []
        on_external = False
        for ep in container.endpoints:
            network = self.networks.get(ep.network_id)
            if network is None:
                continue
            on_external = on_external or not network.internal
            if network.user_defined:
                links = {link.alias.lower(): link.target.lower() for link in ep.links}
                seen.append(SeenNetwork(network, tuple(sorted(links.items()))))
        seen.sort(key=lambda s: docker_order(s.network))
        # docs/forwarding.md: a container whose networks are all internal is never forwarded for.
        return ModelView(tuple(seen), on_external)

    def networks_of(self, client: str) -> set[str]:
        """Ids of the networks `client` is on (for the isolation check)."""
        view = self.view(client)
        return set() if view is None else {s.network.id for s in view.networks}

    # ----- what it gets (docs/names.md, order.md, answers.md) ----------------------------------

    def answer(self, client: str, qname: str, qtype: str, order: str) -> Expected:
        """`qtype` is A, AAAA or PTR; `order` is first or ordered (docs/order.md)."""
        view = self.view(client)
        if view is None:
            return Expected("REFUSED")
        return self.answer_in(view, qname, qtype, order)

    def answer_in(self, view: ModelView, qname: str, qtype: str, order: str) -> Expected:
        name = qname.lower().removesuffix(".")
        if qtype == "PTR":
            target = self.pointer(view, name)
            if target is not None:
                return Expected("NOERROR", (target,))
        holdings = self.lookup(view, name)
        if holdings is not None:
            return Expected("NOERROR", self.addresses(answering(holdings), qtype, order))
        service = self.service_answer(view, name, qtype, order)
        if service is not None:
            return service
        return Expected("FORWARD" if view.may_forward else "SERVFAIL")

    def service_answer(self, view: ModelView, name: str, qtype: str,
                       order: str) -> Expected | None:
        """docs/srv.md: `_<service>._<proto>.<name>` with <proto> tcp or udp and <name> local:
        one record per holder offering the service (health as docs/health.md), priorities 0,
        1, 2... (`first` and `ordered`; weight 0), target `<container name>.<network>.`, kept
        only when it resolves from this view to exactly that holder. A local <name> without
        the service: NXDOMAIN; other types, and `_<proto>.<name>`: NODATA. None: not a
        service name of a local name (the usual rules apply)."""
        labels = name.split(".")
        if len(labels) >= 3 and labels[0][:1] == "_" and labels[0] != "_" \
                and labels[1] in ("_tcp", "_udp"):
            service, proto, rest = labels[0][1:], labels[1][1:], ".".join(labels[2:])
        elif len(labels) >= 2 and labels[0] in ("_tcp", "_udp"):
            service, proto, rest = None, labels[0][1:], ".".join(labels[1:])
        else:
            return None
        holdings = self.lookup(view, rest)
        if holdings is None:
            return None
        if service is None:
            return Expected("NOERROR")
        offering = [(h, offered_port(h.container, service, proto)) for h in holdings]
        offering = [(h, port) for h, port in offering if port is not None]
        if not offering:
            return Expected("NXDOMAIN")
        if qtype != "SRV":
            return Expected("NOERROR")
        chosen = answering([h for h, _ in offering])
        records: list[str] = []
        for holding, port in offering:
            network = self.networks[holding.endpoint.network_id].name
            target = f"{holding.container.name}.{network}"
            if holding not in chosen or not self._only(view, target, holding):
                continue
            prio = len(records)
            records.append(f"{prio} 0 {port} {target}.")
        return Expected("NOERROR", tuple(records))

    def _only(self, view: ModelView, target: str, holding: Holding) -> bool:
        found = self.lookup(view, target.lower())
        if found is None:
            return False
        answered = answering(found)
        return [(h.container.id, h.endpoint) for h in answered] == [
            (holding.container.id, holding.endpoint)]

    def lookup(self, view: ModelView, name: str) -> list[Holding] | None:
        """docs/names.md, "Lookup": `a.b.c` as a name in every network of the view,
        then `a.b` in network `c`, then `a` in network `b.c`; at each step link aliases first,
        and a link alias hides the real name on its endpoint's network; the first network that
        holds the name wins. None: the name is not in the view."""
        for request, network_name in splits(name):
            for link_pass in (True, False):
                for seen in view.networks:
                    if network_name is not None and network_name != seen.network.name.lower():
                        continue
                    link_target = seen.link_target(request)
                    if link_pass and link_target is None:
                        continue
                    if not link_pass and link_target is not None:
                        continue
                    target = link_target if link_target is not None else request
                    holdings = self.holders(seen.network.id, target)
                    if holdings:
                        return holdings
        return None

    def holders(self, network_id: str, name: str) -> list[Holding]:
        """Every running endpoint on the network that registered `name`, first registered
        first (docs/order.md)."""
        found = [Holding(self.registered[(c.id, network_id, name)], c, ep)
                 for c in self.containers.values() for ep in c.endpoints
                 if ep.network_id == network_id and name in endpoint_names(c, ep)]
        return sorted(found, key=lambda h: h.number)

    @staticmethod
    def addresses(holdings: Iterable[Holding], qtype: str, order: str) -> tuple[str, ...]:
        """A or AAAA records of the holders (none for another type: NODATA). `first` is the
        earliest holder that has an address of that family."""
        found: list[str] = []
        for holding in holdings:
            address = {"A": holding.endpoint.ipv4, "AAAA": holding.endpoint.ipv6}.get(qtype)
            if address is not None and str(address) not in found:
                found.append(str(address))
        return tuple(found[:1] if order == "first" else found)

    def pointer(self, view: ModelView, name: str) -> str | None:
        """docs/names.md: `<primary name>.<network>.` for an address on a network of the view, from
        the first such network."""
        for seen in view.networks:
            for c in self.containers.values():
                for ep in c.endpoints:
                    if ep.network_id == seen.network.id and any(
                            a.reverse_pointer == name for a in ep.addresses):
                        return f"{c.name}.{seen.network.name}."
        return None


def answering(holdings: list[Holding]) -> list[Holding]:
    """docs/health.md: when a name has a ready holder on the network, only ready holders answer;
    when none is ready, every holder answers."""
    ready = [h for h in holdings if h.container.ready]
    return ready if ready else holdings


def offered_port(container: ContainerInfo, service: str, proto: str) -> int | None:
    """docs/srv.md: the port behind `_<service>._<proto>`: a port number it exposes with that
    protocol, or a service it names by label (the toy engine's ServicePorts carry both)."""
    for offer in container.services:
        if offer.service == service and offer.proto == proto:
            return offer.port
    return None


def restart_order(containers: Iterable[ContainerInfo]) -> list[ContainerInfo]:
    """docs/order.md: start time, then creation time, then ID."""
    return sorted(containers, key=lambda c: (c.started_at, c.created_at, c.id))


def splits(name: str) -> list[tuple[str, str | None]]:
    """The name whole, then cut at each dot from the right: (left part, network name)."""
    result: list[tuple[str, str | None]] = [(name, None)]
    labels = name.split(".")
    for cut in range(len(labels) - 1, 0, -1):
        result.append((".".join(labels[:cut]), ".".join(labels[cut:])))
    return result


# ----- the toy engine -----------------------------------------------------------------------


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
    """A toy Docker engine: what it holds, and the records `docker inspect` would give."""

    def __init__(self) -> None:
        self.networks: dict[str, NetworkInfo] = {BRIDGE.id: BRIDGE}
        self.containers: dict[str, SimContainer] = {}
        self.clock = 0
        self.created = 0
        self.ever_networks: list[NetworkInfo] = [BRIDGE]
        self.ever_names: set[str] = set()
        self.ever_addresses: set[str] = set()

    def tick(self) -> str:
        """A coarse clock (two events a second), so start and creation times sometimes tie."""
        self.clock += 1
        return f"2026-01-01T00:{self.clock // 120:02d}:{self.clock // 2 % 60:02d}Z"

    def new_network(self, name: str, internal: bool, dual: bool) -> NetworkInfo:
        self.created += 1
        n = self.created
        subnets = [ip_network(f"172.{20 + n}.0.0/24")]
        if dual:
            subnets.append(ip_network(f"fd00:{n:x}::/64"))
        network = NetworkInfo(f"net{n}", name, tuple(subnets), internal, dual)
        self.networks[network.id] = network
        self.ever_networks.append(network)
        return network

    def new_container(self, name: str, hostname: str | None) -> SimContainer:
        self.created += 1
        cid = hashlib.sha256(f"c{self.created}".encode()).hexdigest()
        sim = SimContainer(cid, name, hostname, self.tick())
        self.containers[cid] = sim
        self.ever_names.update({name, cid[:12], *([hostname] if hostname else [])})
        return sim

    def free_host(self, network_id: str, wanted: int) -> int:
        """`wanted` if no running container holds it on the network, else the lowest free."""
        taken = {c.plans[network_id].host for c in self.running() if network_id in c.plans}
        free = [h for h in HOSTS if h not in taken]
        return wanted if wanted in free else free[0]

    def running(self) -> list[SimContainer]:
        return [c for c in self.containers.values() if c.running]

    def stopped(self) -> list[SimContainer]:
        return [c for c in self.containers.values() if not c.running]

    def info(self, sim: SimContainer) -> ContainerInfo:
        endpoints = tuple(self._endpoint(nid, plan) for nid, plan in sim.plans.items())
        return ContainerInfo(sim.id, sim.name, sim.hostname, endpoints,
                             started_at=sim.started_at, created_at=sim.created_at,
                             ready=sim.health not in ("starting", "unhealthy"),
                             services=sim.services)

    def _endpoint(self, network_id: str, plan: Plan) -> EndpointInfo:
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

    def state(self, seed: int) -> EngineState:
        """A full listing, networks and containers in an order picked by `seed`."""
        networks = list(self.networks.values())
        containers = [self.info(c) for c in self.running()]
        random.Random(seed).shuffle(networks)
        random.Random(seed).shuffle(containers)
        return EngineState(tuple(networks), tuple(containers))

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
