# "What does this client see, and why?" (docs/operations.md): a pure function over the name table
# that explains which view an address gets (which container, which networks in which order,
# its link aliases) and, for a name, which network and holder answer, in which registration
# order, and why the others do not (later in order, shadowed by an earlier network, on a network
# the client is not on, stopped). The answer it predicts comes from answer.decide(), the same
# function the packet path uses. Output is JSON-ready dicts; render_text() prints them.
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any

import dns.rcode
from dns.rdatatype import AAAA, A

from resolver.answer import FORWARD, LocalAnswer, Policy, decide
from resolver.model import IPAddress
from resolver.table import NameTable
from resolver.views import Holder, View, ViewEntry, find_name

ORDER_RULE = ("Docker's endpoint order: internal networks last, networks with more gateway "
              "families (dual-stack) first, then by name")

# The health feature hooks in here: container id -> why it does not answer now (e.g.
# "unhealthy"), or None. Until then nothing is held back but by the table itself.
HeldBack = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class StoppedContainer:
    """A container the engine knows but that is not running: it holds no name. `networks`
    maps network name -> the names it would register there (aliases, short ID, hostname)."""

    id: str
    name: str
    networks: tuple[tuple[str, tuple[str, ...]], ...]
    state: str = "exited"


def explain(table: NameTable, policy: Policy, address: IPAddress, name: str | None = None,
            stopped: Sequence[StoppedContainer] = (), held_back: HeldBack | None = None
            ) -> dict[str, Any]:
    """The view `address` gets, and how `name` (if given) resolves in it."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    view = table.view_for(address)
    result: dict[str, Any] = {"address": str(address), "synced": table.synced}
    result.update(_explain_view(table, address, view))
    if name is not None:
        qname = name.strip().rstrip(".").lower()
        result["name"] = _explain_name(table, policy, view, qname, stopped, held_back)
    return result


def _explain_view(table: NameTable, address: IPAddress, view: View | None) -> dict[str, Any]:
    if view is None:
        return {"view": "refused", "why": f"{address} is no container, in no user-defined "
                "network's subnet and not in --host-view-from: every query gets REFUSED",
                "networks": []}
    networks = [_network_entry(entry) for entry in view.entries]
    common = {"networks": networks, "order": ORDER_RULE, "may_forward": view.may_forward,
              "ndots": view.ndots_set}
    if view.key.startswith("c:"):
        container = table.container(view.key[2:])
        assert container is not None
        shown = {entry.records.network.id for entry in view.entries}
        left_out = []
        for ep in container.endpoints:
            network = next((n for n in table.networks if n.id == ep.network_id), None)
            if network is not None and network.id not in shown:
                left_out.append({"network": network.name, "why": "a predefined network "
                                 "(bridge, host, none): Docker serves no names there"})
        return {"view": "container", "container": {"id": container.id, "name": container.name},
                "why": f"{address} is an address of container {container.name}", **common,
                "left_out": left_out}
    if view.key.startswith("n:"):
        network_name = networks[0]["name"] if networks else "?"
        return {"view": "network", "why": f"{address} is in the subnet of network "
                f"{network_name} but is no known container: that network alone, no link "
                "aliases", **common}
    return {"view": "host", "why": f"{address} is in --host-view-from: every user-defined "
            "network, no link aliases", **common}


def _network_entry(entry: ViewEntry) -> dict[str, Any]:
    network = entry.records.network
    return {"name": network.name, "id": network.id, "internal": network.internal,
            "ipv6": network.ipv6, "link_aliases": dict(entry.links)}


@dataclass(frozen=True, slots=True)
class _Found:
    entry: ViewEntry
    target: str  # the name looked up on the network (a link alias' target, or the request)
    how: str


def trace(view: View, name: str) -> _Found | None:
    """resolve_name() with its reasons: which split, which pass (link alias or name) and which
    network found it (the walk itself is views.find_name)."""
    match = find_name(view, name)
    if match is None:
        return None
    how = (f"link alias {match.request} -> {match.target}" if match.via_link
           else f"name {match.request}")
    if match.network_key is not None:
        how += f" in network {match.network_key} (the name's last labels)"
    return _Found(match.entry, match.target, how)


def _explain_name(table: NameTable, policy: Policy, view: View | None, qname: str,
                  stopped: Sequence[StoppedContainer], held_back: HeldBack | None
                  ) -> dict[str, Any]:
    result: dict[str, Any] = {"asked": qname, "answer": _predicted(table, policy, view, qname)}
    found = trace(view, qname) if view is not None else None
    answering = {r for kind in ("A", "AAAA") for r in result["answer"][kind]["records"]}
    seen = set()
    if found is not None:
        network = found.entry.records.network
        seen.add(network.id)
        result["found"] = f"{found.how} on network {network.name}"
        result["network"] = network.name
        result["holders"] = [_holder(h, i, answering, policy, held_back)
                             for i, h in enumerate(found.entry.records.holders[found.target])]
    else:
        result["found"] = None
    key = found.target if found is not None else qname
    result["others"] = _others(table, view, key, seen, found)
    result["stopped"] = [{"container": s.name, "id": s.id[:12], "state": s.state,
                          "networks": [n for n, names in s.networks
                                       if key in (x.lower() for x in names)],
                          "why": f"{s.state}: a container that is not running holds no name"}
                         for s in stopped if any(key in (x.lower() for x in names)
                                                 for _, names in s.networks)]
    return result


def _holder(holder: Holder, index: int, answering: set[str], policy: Policy,
            held_back: HeldBack | None) -> dict[str, Any]:
    addresses = [str(a) for a in (holder.ipv4, holder.ipv6) if a is not None]
    answers = any(a in answering for a in addresses)
    if answers:
        why = "answers" if index == 0 else f"answers (--alias-order {policy.alias_order})"
    else:
        reason = held_back(holder.container_id) if held_back is not None else None
        why = reason or (f"registered after the first holder: --alias-order "
                         f"{policy.alias_order} answers the earliest live one only")
    return {"order": index + 1, "container": holder.primary_name, "id": holder.container_id[:12],
            "addresses": addresses, "answers": answers, "why": why}


def _others(table: NameTable, view: View | None, key: str, seen: set[str],
            found: _Found | None) -> list[dict[str, Any]]:
    """Holders of the same name on networks that did not answer: later in this view, or not
    in it at all."""
    in_view = [e.records.network.id for e in view.entries] if view is not None else []
    others = []
    for network in sorted(table.networks, key=lambda n: n.name):
        records = table.records(network.id)
        holders = records.holders.get(key) if records is not None else None
        if not holders or network.id in seen:
            continue
        if network.id in in_view:
            assert found is not None
            why = (f"network {network.name} comes after {found.entry.records.network.name} "
                   "in this client's view: the first network holding the name wins")
        else:
            why = f"this client is not on network {network.name}"
        others.append({"network": network.name, "why": why,
                       "holders": [h.primary_name for h in holders]})
    return others


def _predicted(table: NameTable, policy: Policy, view: View | None, qname: str
               ) -> dict[str, Any]:
    """What the packet path answers for A and AAAA: the same decide() call."""
    predicted: dict[str, Any] = {}
    for qtype, text in ((A, "A"), (AAAA, "AAAA")):
        decision = decide(view, table.synced, qname, qtype, policy)
        if decision is FORWARD:
            predicted[text] = {"rcode": "forwarded upstream", "records": []}
            continue
        assert isinstance(decision, LocalAnswer)
        predicted[text] = {"rcode": dns.rcode.to_text(dns.rcode.Rcode.make(decision.rcode)),
                           "records": [r.rdata.to_text() for r in decision.records],
                           "shuffled": decision.shuffle}
    return predicted


def render_text(result: dict[str, Any]) -> str:
    """The explanation as lines for a terminal (`scopedns explain`)."""
    lines = [f"{result['address']}: {result['view']} view: {result['why']}"]
    if not result.get("synced", True):
        lines.append("  (not synced with the engine yet: every query gets SERVFAIL)")
    for index, network in enumerate(result.get("networks", []), 1):
        links = ", ".join(f"{a} -> {t}" for a, t in network["link_aliases"].items())
        flags = "".join((" internal" if network["internal"] else "",
                         " ipv6" if network["ipv6"] else ""))
        lines.append(f"  {index}. network {network['name']}{flags}"
                     + (f"; link aliases: {links}" if links else ""))
    for left in result.get("left_out", []):
        lines.append(f"  not in the view: {left['network']}: {left['why']}")
    if result.get("networks"):
        lines.append(f"  order: {result['order']}")
    if "name" in result:
        lines += _render_name(result["name"]) + _render_unknown(result)
    return "\n".join(lines)


def _render_name(name: dict[str, Any]) -> list[str]:
    lines = [f"{name['asked']}:"]
    for kind in ("A", "AAAA"):
        answer = name["answer"][kind]
        records = " ".join(answer["records"])
        lines.append(f"  {kind}: {answer['rcode']}{' ' + records if records else ''}"
                     + (" (shuffled per answer)" if answer.get("shuffled") else ""))
    if name["found"]:
        lines.append(f"  found as {name['found']}; holders in registration order:")
        for holder in name["holders"]:
            lines.append(f"    {holder['order']}. {holder['container']} "
                         f"{' '.join(holder['addresses'])}: {holder['why']}")
    else:
        lines.append("  no holder in this view")
    for other in name["others"]:
        lines.append(f"  also held on {other['network']} by {', '.join(other['holders'])}: "
                     f"{other['why']}")
    for gone in name["stopped"]:
        lines.append(f"  {gone['container']} ({gone['id']}) would hold it on "
                     f"{', '.join(gone['networks'])}: {gone['why']}")
    return lines


def _render_unknown(result: dict[str, Any]) -> list[str]:
    return [f"  ({result['stopped_unknown']})"] if result.get("stopped_unknown") else []
