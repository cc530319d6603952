# Table-driven tests of docs/ without sockets: who sees which names, Docker's lookup order,
# NODATA, case, PTR, link aliases, alias orders. Each case is (client, qname, qtype) -> what a
# user would see: addresses, a PTR target, NODATA, or that the query goes upstream.
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address, ip_network

import dns.rcode
import dns.rdatatype
import pytest
from dns.rcode import NOERROR, NXDOMAIN, REFUSED, SERVFAIL

from resolver.answer import FORWARD, AliasOrder, LocalAnswer, Policy, decide
from resolver.model import ContainerInfo
from resolver.table import NameTable
from resolver.views import HostViewPolicy
from testkit.topology import Topology, attach, container, network

ALPHA = network("alpha", "172.30.0.0/24")
BETA = network("beta", "172.31.0.0/24")
DUAL = network("dual6", "172.32.0.0/24", ipv6="fd00:32::/64")
INNER = network("aaa-inner", "172.33.0.0/24", internal=True)
BRIDGE = network("bridge", "172.17.0.0/16", user_defined=False)

WEB1 = container("web1", attach(ALPHA, 2, "app"), hostname="myhost")
WEB2 = container("web2", attach(ALPHA, 3, "app", links={"lnk": "web1", "web3": "web1"}),
                 attach(BETA, 3))
WEB3 = container("web3", attach(BETA, 4))
MULTI = container("multi", attach(ALPHA, 5), attach(BETA, 5))
DOTTED = container("my.dotted", attach(ALPHA, 6))
SVC_A = container("svc-a", attach(ALPHA, 7, "svc"))
SVC_B = container("svc-b", attach(BETA, 7, "svc"))
DSVC_A = container("dsvc-a", attach(ALPHA, 8, "dsvc"))
DSVC_D = container("dsvc-d", attach(DUAL, 8, "dsvc"))
BOTH = container("both", attach(ALPHA, 9), attach(DUAL, 9))
V6 = container("v6", attach(DUAL, 2))
ISVC_I = container("isvc-i", attach(INNER, 3, "isvc"))
ISVC_A = container("isvc-a", attach(ALPHA, 10, "isvc"))
IC = container("ic", attach(INNER, 4), attach(ALPHA, 11))
INTC = container("intc", attach(INNER, 5))
BRIDGEONLY = container("bridgeonly", attach(BRIDGE, 2))
MIXED = container("mixed", attach(BRIDGE, 3), attach(INNER, 6))

TOPOLOGY = Topology(
    [ALPHA, BETA, DUAL, INNER, BRIDGE],
    [WEB1, WEB2, WEB3, MULTI, DOTTED, SVC_A, SVC_B, DSVC_A, DSVC_D, BOTH, V6, ISVC_I, ISVC_A,
     IC, INTC, BRIDGEONLY, MIXED],
)


def ip_of(c: ContainerInfo, net_index: int = 0, v6: bool = False) -> str:
    ep = c.endpoints[net_index]
    return str(ep.ipv6 if v6 else ep.ipv4)


@dataclass(frozen=True)
class Case:
    client: str  # source address
    qname: str
    qtype: str
    expect: tuple[str, ...] | str  # addresses / PTR target, "NODATA", "FORWARD", or an rcode name


def _answer(table: NameTable, case: Case, policy: Policy) -> str | tuple[str, ...]:
    view = table.view_for(ip_address(case.client))
    decision = decide(view, table.synced, case.qname.lower().rstrip("."),
                      dns.rdatatype.from_text(case.qtype), policy)
    if decision is FORWARD:
        return "FORWARD"
    assert isinstance(decision, LocalAnswer)
    if decision.rcode != NOERROR:
        rcode = dns.rcode.Rcode.make(decision.rcode)
        return {NXDOMAIN: "NXDOMAIN", REFUSED: "REFUSED", SERVFAIL: "SERVFAIL"}[rcode]
    if not decision.records:
        return "NODATA"
    return tuple(r.rdata.to_text() for r in decision.records)


W2 = ip_of(WEB2)
CASES = [
    pytest.param(Case(W2, "web1", "A", (ip_of(WEB1),)), id="name-on-shared-network"),
    pytest.param(Case(W2, "WEB1.", "A", (ip_of(WEB1),)), id="case-insensitive-name"),
    pytest.param(Case(W2, "app", "A", (ip_of(WEB1),)), id="alias-first-registered"),
    pytest.param(Case(W2, "lnk", "A", (ip_of(WEB1),)), id="link-alias-for-declarer"),
    pytest.param(Case(W2, "LNK", "A", (ip_of(WEB1),)), id="link-alias-case-insensitive"),
    pytest.param(Case(ip_of(WEB1), "lnk", "A", "FORWARD"), id="link-alias-not-for-others"),
    pytest.param(Case(W2, "web3", "A", (ip_of(WEB1),)), id="link-alias-beats-name"),
    pytest.param(Case(W2, "web3.beta", "A", (ip_of(WEB3),)), id="name-dot-network-split"),
    pytest.param(Case(W2, "lnk.alpha", "A", (ip_of(WEB1),)), id="link-alias-dot-its-network"),
    pytest.param(Case(W2, "lnk.beta", "A", "FORWARD"), id="link-alias-only-on-its-network"),
    pytest.param(Case(ip_of(WEB1), "web3", "A", "FORWARD"), id="other-network-invisible"),
    pytest.param(Case(W2, "web1.ALPHA", "A", (ip_of(WEB1),)), id="network-suffix-any-case"),
    pytest.param(Case(W2, "web1.beta", "A", "FORWARD"), id="name-not-on-that-network"),
    pytest.param(Case(W2, "web1.nosuch", "A", "FORWARD"), id="unknown-network-suffix"),
    pytest.param(Case(ip_of(MULTI), "svc", "A", (ip_of(SVC_A),)), id="network-order-by-name"),
    pytest.param(Case(ip_of(MULTI), "svc.beta", "A", (ip_of(SVC_B),)), id="pick-network"),
    pytest.param(Case(ip_of(BOTH), "dsvc", "A", (ip_of(DSVC_D),)), id="dual-stack-first"),
    pytest.param(Case(ip_of(IC, 1), "isvc", "A", (ip_of(ISVC_A),)), id="internal-last"),
    pytest.param(Case(W2, "web1", "AAAA", "NODATA"), id="aaaa-on-ipv4-network-nodata"),
    pytest.param(Case(W2, "web1", "MX", "NODATA"), id="mx-nodata"),
    pytest.param(Case(W2, "web1", "TXT", "NODATA"), id="txt-nodata-not-forwarded"),
    pytest.param(Case(W2, "web1", "ANY", "NODATA"), id="any-nodata"),
    pytest.param(Case(ip_of(BOTH), "v6", "AAAA", (ip_of(V6, v6=True),)), id="aaaa"),
    pytest.param(Case(ip_of(BOTH), "v6", "A", (ip_of(V6),)), id="a-on-dual-stack"),
    pytest.param(Case(W2, "2.0.30.172.in-addr.arpa", "PTR", ("web1.alpha.",)), id="ptr"),
    pytest.param(Case(W2, "2.0.30.172.IN-ADDR.ARPA", "PTR", ("web1.alpha.",)), id="ptr-case"),
    pytest.param(Case("127.0.0.1", "4.0.31.172.in-addr.arpa", "PTR", ("web3.beta.",)),
                 id="ptr-host-view"),
    pytest.param(Case(ip_of(BOTH), ip_address(ip_of(V6, v6=True)).reverse_pointer, "PTR",
                      ("v6.dual6.",)), id="ptr-ipv6"),
    pytest.param(Case(ip_of(WEB1), "4.0.31.172.in-addr.arpa", "PTR", "FORWARD"),
                 id="ptr-other-network-forwarded"),
    pytest.param(Case(W2, "3.0.30.172.in-addr.arpa", "PTR", ("web2.alpha.",)),
                 id="ptr-gives-primary-name-not-alias"),
    pytest.param(Case(W2, WEB1.short_id, "A", (ip_of(WEB1),)), id="short-id"),
    pytest.param(Case(W2, WEB1.id[:11], "A", "FORWARD"), id="eleven-chars-is-not-an-id"),
    pytest.param(Case(W2, "myhost", "A", (ip_of(WEB1),)), id="hostname"),
    pytest.param(Case(W2, "my.dotted", "A", (ip_of(DOTTED),)), id="dotted-name"),
    pytest.param(Case(W2, "my.dotted.alpha", "A", (ip_of(DOTTED),)), id="dotted-name-network"),
    pytest.param(Case(ip_of(BRIDGEONLY), "web1", "A", "FORWARD"), id="default-bridge-no-names"),
    pytest.param(Case(ip_of(MIXED, 1), "isvc", "A", (ip_of(ISVC_I),)), id="bridge-plus-udn"),
    pytest.param(Case(ip_of(MIXED), "nosuch.invalid", "A", "FORWARD"),
                 id="bridge-gives-external-access"),
    pytest.param(Case(ip_of(INTC), "nosuch.invalid", "A", "SERVFAIL"),
                 id="internal-only-never-forwarded"),
    pytest.param(Case(ip_of(INTC), "isvc", "A", (ip_of(ISVC_I),)), id="internal-local-names"),
    pytest.param(Case("172.31.0.200", "web3", "A", (ip_of(WEB3),)), id="network-view"),
    pytest.param(Case("172.31.0.200", "web1", "A", "FORWARD"), id="network-view-one-net"),
    pytest.param(Case("172.31.0.200", "lnk", "A", "FORWARD"), id="network-view-no-links"),
    pytest.param(Case("172.33.0.200", "nosuch.invalid", "A", "SERVFAIL"),
                 id="network-view-internal"),
    pytest.param(Case("127.0.0.1", "web3", "A", (ip_of(WEB3),)), id="host-view"),
    pytest.param(Case("127.0.0.1", "lnk", "A", "FORWARD"), id="host-view-no-links"),
    pytest.param(Case("::1", "svc", "A", (ip_of(SVC_A),)), id="host-view-ipv6-loopback"),
    pytest.param(Case("10.9.9.9", "web1", "A", "REFUSED"), id="stranger-refused"),
    pytest.param(Case("172.17.0.99", "web1", "A", "REFUSED"), id="default-bridge-subnet-only"),
    pytest.param(Case(W2, "", "NS", "FORWARD"), id="root-forwarded"),
]


@pytest.mark.parametrize("case", CASES)
def test_lookup(case: Case) -> None:
    assert _answer(TOPOLOGY.table(), case, Policy()) == case.expect


def test_every_answer_is_from_the_clients_networks() -> None:
    """No client gets an address from a network it is not on; and the check is not empty:
    every client on a user-defined network is answered its own name."""
    table = TOPOLOGY.table()
    answered: set[tuple[str, str]] = set()
    for client in TOPOLOGY.containers:
        mine = {ep.network_id for ep in client.endpoints}
        allowed = {str(a) for c in TOPOLOGY.containers for ep in c.endpoints
                   if ep.network_id in mine for a in ep.addresses}
        for other in TOPOLOGY.containers:
            for qtype in ("A", "AAAA"):
                got = _answer(table, Case(ip_of(client), other.name, qtype, ()), Policy())
                if got in ("FORWARD", "NODATA", "SERVFAIL"):  # SERVFAIL: internal only
                    continue
                assert isinstance(got, tuple), (client.name, other.name, qtype, got)
                assert set(got) <= allowed, (client.name, other.name)
                answered.add((client.name, other.name))
    on_user_networks = [c.name for c in TOPOLOGY.containers
                        if any(ep.network_id != BRIDGE.id for ep in c.endpoints)]
    assert {(name, name) for name in on_user_networks} <= answered


def test_ndots_option_keeps_single_label_misses_local() -> None:
    from dataclasses import replace

    ndots = replace(container("searcher", attach(ALPHA, 50)), ndots_set=True)
    table = Topology([ALPHA], [WEB1, ndots]).table()
    client = ip_of(ndots)
    assert _answer(table, Case(client, "nosuch", "A", ()), Policy()) == "NODATA"
    assert _answer(table, Case(client, "nosuch", "AAAA", ()), Policy()) == "NODATA"
    assert _answer(table, Case(client, "nosuch", "MX", ()), Policy()) == "FORWARD"
    assert _answer(table, Case(client, "no.such", "A", ()), Policy()) == "FORWARD"
    assert _answer(table, Case(client, "web1", "A", ()), Policy()) == (ip_of(WEB1),)
    assert _answer(table, Case(ip_of(WEB1), "nosuch", "A", ()), Policy()) == "FORWARD"


def test_no_upstream_means_nxdomain() -> None:
    policy = Policy(forwarding=False)
    assert _answer(TOPOLOGY.table(), Case(W2, "nosuch.invalid", "A", ()), policy) == "NXDOMAIN"


def test_not_synced_is_servfail() -> None:
    assert _answer(NameTable(), Case("127.0.0.1", "web1", "A", ()), Policy()) == "SERVFAIL"


def test_host_view_from_is_configurable() -> None:
    table = Topology(TOPOLOGY.networks, TOPOLOGY.containers).table(
        host_view=HostViewPolicy((ip_network("192.0.2.0/24"),)))
    assert _answer(table, Case("192.0.2.7", "web3", "A", ()), Policy()) == (ip_of(WEB3),)
    assert _answer(table, Case("127.0.0.1", "web3", "A", ()), Policy()) == "REFUSED"


@pytest.mark.parametrize(("order", "expect"), [
    (AliasOrder.FIRST, (ip_of(WEB1),)),
    (AliasOrder.ORDERED, (ip_of(WEB1), ip_of(WEB2))),
])
def test_alias_orders(order: AliasOrder, expect: tuple[str, ...]) -> None:
    got = _answer(TOPOLOGY.table(), Case(W2, "app", "A", ()), Policy(alias_order=order))
    assert got == expect


def test_shuffle_returns_every_holder_shuffled() -> None:
    table = TOPOLOGY.table()
    view = table.view_for(ip_address(ip_of(WEB2)))
    answer = decide(view, True, "app", 1, Policy(alias_order=AliasOrder.SHUFFLE))
    assert isinstance(answer, LocalAnswer) and answer.shuffle
    assert {r.rdata.to_text() for r in answer.records} == {ip_of(WEB1), ip_of(WEB2)}


def test_ttl_is_applied() -> None:
    view = TOPOLOGY.table().view_for(ip_address(ip_of(WEB2)))
    answer = decide(view, True, "web1", 1, Policy(ttl=600))
    assert isinstance(answer, LocalAnswer) and [r.ttl for r in answer.records] == [600]
