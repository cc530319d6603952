# Answer policy (docs/answers.md): what a view says about (qname, qtype). Pure: it returns a
# LocalAnswer (records to send) or FORWARD (ask upstream); it never sees bytes or sockets.
# Owner names are always the question name, so records carry only type, TTL and rdata.
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final, Literal

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
from dns.rcode import NOERROR, NXDOMAIN, REFUSED, SERVFAIL
from dns.rdatatype import AAAA, NS, PTR, SOA, SRV, A

from resolver.srv import ServiceKind, ServiceLookup, lookup_service
from resolver.views import (
    Holder,
    View,
    address_from_ptr_name,
    answering,
    resolve_address,
    resolve_name,
)

IN = dns.rdataclass.IN


class AliasOrder(StrEnum):
    """How several holders of one name are answered (docs/order.md)."""

    FIRST = "first"
    ORDERED = "ordered"
    SHUFFLE = "shuffle"


@dataclass(frozen=True, slots=True)
class Record:
    """One answer record; its owner is the question name."""

    rdata: dns.rdata.Rdata
    ttl: int

    @property
    def rtype(self) -> int:
        return int(self.rdata.rdtype)


@dataclass(frozen=True, slots=True)
class LocalAnswer:
    rcode: int
    records: tuple[Record, ...] = ()
    authoritative: bool = False
    # With --domain: the zone's SOA goes in the authority section (negative answers).
    authority: tuple[tuple[dns.name.Name, Record], ...] = ()
    shuffle: bool = False
    # SRV: the targets' A/AAAA records (docs/srv.md), dropped without TC when they do not fit.
    additional: tuple[tuple[dns.name.Name, Record], ...] = ()


    @property
    def answer_only(self) -> bool:
        """Only answer records (none in other sections): the fast renderer can write it."""
        return not self.authority and not self.additional


class Verdict(Enum):
    FORWARD = "forward"  # not ours: ask upstream


FORWARD: Final = Verdict.FORWARD
Decision = LocalAnswer | Literal[Verdict.FORWARD]

REFUSED_ANSWER = LocalAnswer(REFUSED)
NOT_SYNCED = LocalAnswer(SERVFAIL)  # CoreDNS TestNotSyncedServeDNS: never NXDOMAIN before sync
NO_FORWARD_INTERNAL = LocalAnswer(SERVFAIL)  # docs/forwarding.md: all-internal, never forwarded
NO_UPSTREAM = LocalAnswer(NXDOMAIN)  # --no-upstream: misses are final
NDOTS_NODATA = LocalAnswer(NOERROR)
ZONE_SERIAL = 1


@dataclass(frozen=True, slots=True)
class Policy:
    ttl: int = 0
    alias_order: AliasOrder = AliasOrder.FIRST
    domain: str | None = None  # lower-case, no trailing dot
    forwarding: bool = True
    health: bool = True  # False: --ignore-health (docs/health.md)


def decide(view: View | None, synced: bool, qname: str, qtype: int, policy: Policy) -> Decision:
    """The answer for `qname` (lower-case, no trailing dot; "" is the root) asked from `view`."""
    if view is None:
        return REFUSED_ANSWER
    if not synced:
        return NOT_SYNCED
    if policy.domain is not None and _in_zone(qname, policy.domain):
        return _zone_answer(view, qname, qtype, policy)
    if qtype == PTR:
        address = address_from_ptr_name(qname)
        if address is not None:
            target = resolve_address(view, address)
            if target is not None:
                return LocalAnswer(NOERROR, (_ptr(target, policy.ttl),))
    holders = resolve_name(view, qname) if qname else None
    if holders is not None:
        return _name_answer(holders, qtype, policy, authoritative=False)
    service = lookup_service(view, qname, policy.health,
                             policy.alias_order is AliasOrder.SHUFFLE)
    if service is not None:
        return _service_answer(service, qtype, policy, zone=None)
    if view.ndots_set and qtype in (A, AAAA) and qname and "." not in qname:
        return NDOTS_NODATA  # Docker's ndots rule (docs/answers.md, "NODATA")
    if not view.may_forward:
        return NO_FORWARD_INTERNAL
    return FORWARD if policy.forwarding else NO_UPSTREAM


def _in_zone(qname: str, domain: str) -> bool:
    return qname == domain or qname.endswith("." + domain)


def _zone_answer(view: View, qname: str, qtype: int, policy: Policy) -> LocalAnswer:
    assert policy.domain is not None
    apex = dns.name.from_text(policy.domain)
    soa = ((apex, _soa(apex, policy.ttl)),)
    if qname == policy.domain:
        if qtype == SOA:
            return LocalAnswer(NOERROR, (_soa(apex, policy.ttl),), authoritative=True)
        if qtype == NS:
            return LocalAnswer(NOERROR, (_ns(apex, policy.ttl),), authoritative=True)
        return LocalAnswer(NOERROR, authoritative=True, authority=soa)
    relative = qname[: -len(policy.domain) - 1]
    holders = resolve_name(view, relative)
    if holders is not None:
        answer = _name_answer(holders, qtype, policy, authoritative=True)
    else:
        service = lookup_service(view, relative, policy.health,
                                 policy.alias_order is AliasOrder.SHUFFLE)
        if service is None or service.kind is ServiceKind.NOT_OFFERED:
            return LocalAnswer(NXDOMAIN, authoritative=True, authority=soa)
        answer = _service_answer(service, qtype, policy, zone=apex)
    if not answer.records:
        return LocalAnswer(NOERROR, authoritative=True, authority=soa)
    return answer


def _name_answer(
    holders: tuple[Holder, ...], qtype: int, policy: Policy, *, authoritative: bool
) -> LocalAnswer:
    holders = answering(holders, policy.health)
    if qtype == A:
        addresses = [str(h.ipv4) for h in holders if h.ipv4 is not None]
        make = _a
    elif qtype == AAAA:
        addresses = [str(h.ipv6) for h in holders if h.ipv6 is not None]
        make = _aaaa
    else:
        return LocalAnswer(NOERROR, authoritative=authoritative)  # NODATA, never forwarded
    unique = list(dict.fromkeys(addresses))
    if policy.alias_order is AliasOrder.FIRST:
        unique = unique[:1]
    records = tuple(make(address, policy.ttl) for address in unique)
    shuffle = policy.alias_order is AliasOrder.SHUFFLE and len(records) > 1
    return LocalAnswer(NOERROR, records, authoritative, shuffle=shuffle)


def _service_answer(service: ServiceLookup, qtype: int, policy: Policy,
                    zone: dns.name.Name | None) -> LocalAnswer:
    """SRV records of the holders offering a service, their addresses as additional data;
    NXDOMAIN for a service nobody offers, NODATA for other types (docs/srv.md)."""
    authoritative = zone is not None
    if service.kind is ServiceKind.NOT_OFFERED:
        return LocalAnswer(NXDOMAIN, authoritative=authoritative)
    if service.kind is ServiceKind.PROTOCOL_NODE or qtype != SRV:
        return LocalAnswer(NOERROR, authoritative=authoritative)
    origin = zone if zone is not None else dns.name.root
    records: list[Record] = []
    additional: list[tuple[dns.name.Name, Record]] = []
    for found in service.targets:
        target = dns.name.from_text(found.target, origin)
        rdata = dns.rdtypes.IN.SRV.SRV(IN, SRV, found.priority, found.weight, found.port, target)
        records.append(Record(rdata, policy.ttl))
        if found.holder.ipv4 is not None:
            additional.append((target, _a(str(found.holder.ipv4), policy.ttl)))
        if found.holder.ipv6 is not None:
            additional.append((target, _aaaa(str(found.holder.ipv6), policy.ttl)))
    shuffle = policy.alias_order is AliasOrder.SHUFFLE and len(records) > 1
    return LocalAnswer(NOERROR, tuple(records), authoritative, shuffle=shuffle,
                       additional=tuple(additional))


def _a(address: str, ttl: int) -> Record:
    return Record(dns.rdtypes.IN.A.A(IN, A, address), ttl)


def _aaaa(address: str, ttl: int) -> Record:
    return Record(dns.rdtypes.IN.AAAA.AAAA(IN, AAAA, address), ttl)


def _ptr(target: str, ttl: int) -> Record:
    return Record(dns.rdtypes.ANY.PTR.PTR(IN, PTR, dns.name.from_text(target)), ttl)


def _ns(apex: dns.name.Name, ttl: int) -> Record:
    return Record(dns.rdtypes.ANY.NS.NS(IN, NS, dns.name.Name(("ns", *apex.labels))), ttl)


def _soa(apex: dns.name.Name, ttl: int) -> Record:
    rdata = dns.rdtypes.ANY.SOA.SOA(
        IN, SOA,
        dns.name.Name(("ns", *apex.labels)),
        dns.name.Name(("hostmaster", *apex.labels)),
        ZONE_SERIAL, 3600, 600, 86400, ttl,
    )
    return Record(rdata, ttl)
