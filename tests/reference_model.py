# A reference model of docs/ for the property tests (health and SRV included): a plain record
# of the world (networks, running containers, one registration number per (container, network,
# name)) and an answer function that scans all of it for every question, straight from the
# docs' words. Written for clarity, not speed; it shares no logic with resolver.table,
# resolver.views or watchers/ (records from resolver.model are only its inputs), so the two can
# be compared. It follows the engine's events as docs/failures.md says the watcher does
# (`event`), against what the engine holds at that moment (an `Inspect`, the toy engine of
# tests/toy_engine.py).
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from ipaddress import ip_address, ip_network
from typing import Protocol

from resolver.model import ContainerInfo, EndpointInfo, NetworkInfo

# docs/views.md: the default --host-view-from.
HOST_VIEW_FROM = (ip_network("127.0.0.0/8"), ip_network("::1/128"))
RegistrationKey = tuple[str, str, str]  # (container id, network id, lower-case name)
# docs/failures.md, "Engine loss": container events that make the watcher re-inspect, and those
# after which the container's names leave at once.
REINSPECTING = frozenset({"start", "restart", "kill", "rename"})
LEAVING = frozenset({"die", "stop", "destroy"})


@dataclass(frozen=True)
class EngineEvent:
    """One engine event: `kind` container or network, the action, the actor's id, and for a
    network connect or disconnect, the container's. `again`: the index in the engine's log of
    the event this one repeats, late and stamped as it was: a stale event."""

    kind: str
    action: str
    actor: str
    container: str = ""
    again: int | None = None


class Inspect(Protocol):
    """What the engine says now when asked (the toy engine)."""

    def container(self, container_id: str) -> ContainerInfo | None:
        """The running container, or None (stopped or gone)."""

    def network(self, network_id: str) -> NetworkInfo | None: ...


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

    def event(self, event: EngineEvent, now: Inspect) -> None:
        """docs/failures.md, "Engine loss": what each event does. Events carry no addresses:
        what may have joined is re-inspected, so it counts as the engine has it `now`; a
        disconnect re-inspects without the endpoint it names; a network create inspects the
        network. docs/health.md: a `health_status` event re-inspects too. A stale event
        removes nothing on its own word: it only re-inspects."""
        kind, action = event.kind, event.action
        if event.again is not None:
            self._stale(event, now)
        elif kind == "container" and action in LEAVING:
            self.container_stopped(event.actor)
        elif kind == "container" and (action in REINSPECTING
                                      or action.startswith("health_status")):
            self._reinspected(event.actor, now)
        elif kind == "network" and action == "create":
            network = now.network(event.actor)
            if network is None:
                self.network_removed(event.actor)
            else:
                self.network_created(network)
        elif kind == "network" and action == "destroy":
            self.network_removed(event.actor)
        elif kind == "network" and action in ("connect", "disconnect"):
            left = event.actor if action == "disconnect" else ""
            self._reinspected(event.container, now, left)

    def _stale(self, event: EngineEvent, now: Inspect) -> None:
        if event.kind == "network" and event.action in ("create", "destroy"):
            network = now.network(event.actor)
            if network is None:
                self.network_removed(event.actor)
            else:
                self.network_created(network)
        elif event.kind == "network" and event.action in ("connect", "disconnect"):
            self._reinspected(event.container, now)
        elif event.kind == "container" and event.action != "create":
            self._reinspected(event.actor, now)

    def _reinspected(self, container_id: str, now: Inspect, left: str = "") -> None:
        """The container as the engine has it now, minus its endpoint on network `left`; a
        network it is on that the model does not know yet is inspected first."""
        container = now.container(container_id)
        if container is None:
            self.container_stopped(container_id)
            return
        for ep in container.endpoints:
            network = None if ep.network_id in self.networks else now.network(ep.network_id)
            if network is not None:
                self.network_created(network)
        kept = tuple(ep for ep in container.endpoints if ep.network_id != left)
        self.container_is(replace(container, endpoints=kept))

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

    def answer_in(self, view: ModelView, qname: str, qtype: str, order: str) -> Expected:
        """`qtype` is A, AAAA, PTR, SRV or another; `order` is first or ordered
        (docs/order.md). A client without a view gets REFUSED, never asked here."""
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
