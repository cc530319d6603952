# SRV service discovery (docs/srv.md): which query names are service names
# (`_<service>._<proto>.<name>`, and the empty non-terminal `_<proto>.<name>`), which holders of
# <name> offer the service, their priorities and weights, and their targets. Pure: it returns
# plain data that resolver.answer turns into records; no bytes, no I/O.
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from resolver.views import Holder, View, answering, resolve_name, resolve_name_in

PROTOCOLS = frozenset({"tcp", "udp"})


class ServiceKind(Enum):
    OFFERED = "offered"  # at least one holder offers it: SRV records (or NODATA for other types)
    NOT_OFFERED = "not-offered"  # <name> is local but nobody there offers it: NXDOMAIN
    PROTOCOL_NODE = "protocol-node"  # `_<proto>.<name>`: an empty non-terminal, NODATA


@dataclass(frozen=True, slots=True)
class SrvTarget:
    """One SRV record's data; `target` is `<container name>.<network>` (no zone, no dot)."""

    priority: int
    weight: int
    port: int
    target: str
    holder: Holder


@dataclass(frozen=True, slots=True)
class ServiceLookup:
    kind: ServiceKind
    targets: tuple[SrvTarget, ...] = ()


def split_service_name(qname: str) -> tuple[str | None, str, str] | None:
    """`_http._tcp.web` -> ("http", "tcp", "web"); `_tcp.web` -> (None, "tcp", "web"); any other
    name -> None. Only `_tcp` and `_udp` make a protocol label."""
    labels = qname.split(".", 2)
    if (len(labels) == 3 and len(labels[0]) > 1 and labels[0][0] == "_"
            and labels[1][1:] in PROTOCOLS and labels[1][0] == "_"):
        return labels[0][1:], labels[1][1:], labels[2]
    if len(labels) >= 2 and labels[0][0:1] == "_" and labels[0][1:] in PROTOCOLS:
        return None, labels[0][1:], qname.split(".", 1)[1]
    return None


def lookup_service(view: View, qname: str, health: bool,
                   shuffle: bool) -> ServiceLookup | None:
    """What `qname` (lower-case, relative to any zone) is as a service name in `view`; None
    when it is not one or its <name> is not local (then the usual rules apply)."""
    parts = split_service_name(qname)
    if parts is None:
        return None
    service, proto, name = parts
    found = resolve_name_in(view, name)
    if found is None:
        return None
    if service is None:
        return ServiceLookup(ServiceKind.PROTOCOL_NODE)
    records, holders = found
    offers = [(h, _port(h, service, proto)) for h in holders]
    offering = tuple(h for h, port in offers if port is not None)
    if not offering:
        return ServiceLookup(ServiceKind.NOT_OFFERED)
    ports = {h: port for h, port in offers if port is not None}
    network = records.network.name
    chosen = [h for h in answering(offering, health)
              if _targets_exactly(view, f"{h.primary_name.lower()}.{network.lower()}", h, health)]
    targets = tuple(
        SrvTarget(0 if shuffle else index, 1 if shuffle else 0, ports[h],
                  f"{h.primary_name}.{network}", h)
        for index, h in enumerate(chosen))
    return ServiceLookup(ServiceKind.OFFERED, targets)


def _port(holder: Holder, service: str, proto: str) -> int | None:
    for offer in holder.services:
        if offer.service == service and offer.proto == proto:
            return offer.port
    return None


def _targets_exactly(view: View, target: str, holder: Holder, health: bool) -> bool:
    """The target name answers, from this view, with this holder and no other (docs/srv.md:
    a holder whose `<name>.<network>` also finds another holder gets no SRV record)."""
    holders = resolve_name(view, target)
    return holders is not None and answering(holders, health) == (holder,)
