# The toy engine (tests/toy_engine.py) written out as Docker's own JSON, for the in-memory
# engine (tests/memory_engine.py) that the real watcher reads: `GET /networks/{id}` and `GET
# /containers/{id}/json` objects shaped as the engine sends them (the fields
# watchers/translate.py and watchers/discovery.py read, and some they do not), and its events.
# Half the containers look as engines before 25 write them (the short ID among the Aliases),
# half as newer ones (DNSNames), so both spellings reach the translator.
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from resolver.model import EndpointInfo, NetworkInfo, ServicePort
from tests.memory_engine import MemoryEngine
from tests.reference_model import EngineEvent
from tests.toy_engine import Engine, SimContainer


def network_inspect(network: NetworkInfo) -> dict[str, Any]:
    configs = [{"Subnet": str(s), "Gateway": str(s.network_address + 1)}
               for s in network.subnets]
    return {"Name": network.name, "Id": network.id, "Created": "2026-01-01T00:00:00Z",
            "Scope": "local", "Driver": "bridge", "EnableIPv6": network.ipv6,
            "IPAM": {"Driver": "default", "Options": {}, "Config": configs},
            "Internal": network.internal, "Attachable": False, "Ingress": False,
            "ConfigOnly": False, "Containers": {}, "Options": {}, "Labels": {}}


def container_inspect(engine: Engine, sim: SimContainer) -> dict[str, Any]:
    """A container, running or stopped (a stopped one keeps its networks, without
    addresses)."""
    status: dict[str, Any] = {"Status": "running" if sim.running else "exited",
                              "Running": sim.running, "Paused": False, "Restarting": False,
                              "Dead": False, "StartedAt": sim.started_at or "0001-01-01T00:00:00Z"}
    config: dict[str, Any] = {"Hostname": sim.hostname or sim.id[:12], "Image": "busybox",
                              **_offered(sim.services)}
    if sim.health is not None:
        status["Health"] = {"Status": sim.health, "FailingStreak": 0, "Log": []}
        config["Healthcheck"] = {"Test": ["CMD", "true"]}
    networks = {}
    for nid, plan in sim.plans.items():
        network = engine.networks[nid]
        endpoint = engine.endpoint(nid, plan) if sim.running else None
        networks[network.name] = _endpoint(sim, network, endpoint)
    return {"Id": sim.id, "Created": sim.created_at, "Name": f"/{sim.name}", "State": status,
            "Config": config, "HostConfig": {"NetworkMode": next(iter(networks), "none")},
            # Go's encoding/json writes map keys sorted.
            "NetworkSettings": {"Ports": {}, "Networks": dict(sorted(networks.items()))}}


def _offered(services: Iterable[ServicePort]) -> dict[str, Any]:
    """docs/srv.md: a numbered service is an exposed port, a named one a `scopedns.srv.` label."""
    exposed: dict[str, Any] = {}
    labels = {"maintainer": "toy"}
    for offer in services:
        if offer.service == str(offer.port):
            exposed[f"{offer.port}/{offer.proto}"] = {}
        else:
            labels[f"scopedns.srv.{offer.service}"] = f"{offer.port}/{offer.proto}"
    return {"ExposedPorts": exposed, "Labels": labels}


def _endpoint(sim: SimContainer, network: NetworkInfo,
              endpoint: EndpointInfo | None) -> dict[str, Any]:
    """One entry of NetworkSettings.Networks; `endpoint` None: the container is stopped."""
    plan = sim.plans[network.id]
    aliases: list[str] | None = list(plan.aliases) or None
    dns_names = None
    if network.user_defined and int(sim.id, 16) % 2:
        aliases = [*plan.aliases, sim.id[:12]]  # engines before 25
    elif network.user_defined:
        dns_names = [sim.name, *plan.aliases, sim.id[:12]]
    ipv4 = "" if endpoint is None else str(endpoint.ipv4)
    ipv6 = "" if endpoint is None or endpoint.ipv6 is None else str(endpoint.ipv6)
    mac = "" if endpoint is None or endpoint.ipv4 is None else "02:42:" + ":".join(
        f"{b:02x}" for b in endpoint.ipv4.packed)
    v4 = next(s for s in network.subnets if s.version == 4)
    return {"IPAMConfig": None,
            "Links": [f"{link.target}:{link.alias}" for link in plan.links] or None,
            "Aliases": aliases, "MacAddress": mac, "NetworkID": network.id,
            "EndpointID": "" if endpoint is None else f"ep-{sim.id[:8]}-{network.id}",
            "Gateway": "" if endpoint is None else str(v4.network_address + 1),
            "IPAddress": ipv4, "IPPrefixLen": 0 if endpoint is None else v4.prefixlen,
            "IPv6Gateway": "", "GlobalIPv6Address": ipv6,
            "GlobalIPv6PrefixLen": 64 if ipv6 else 0, "DriverOpts": None, "DNSNames": dns_names}


def publish(engine: Engine, memory: MemoryEngine, events: Iterable[EngineEvent]) -> None:
    """The in-memory engine becomes what the toy engine holds now, then emits `events` (those
    of the commands that brought it there), in order: one in its log for each (so the two
    logs share their indices)."""
    memory.networks = {nid: network_inspect(n) for nid, n in engine.networks.items()}
    memory.containers = {cid: container_inspect(engine, sim)
                         for cid, sim in engine.containers.items()}
    for event in events:
        if event.again is not None:
            memory.redeliver(event.again)
            continue
        attributes = {"container": event.container} if event.container else {}
        if event.kind == "network" and event.actor in engine.networks:
            attributes |= {"name": engine.networks[event.actor].name, "type": "bridge"}
        elif event.kind == "container" and event.actor in engine.containers:
            attributes |= {"name": engine.containers[event.actor].name, "image": "busybox"}
        memory.emit(event.kind, event.action, event.actor, **attributes)
