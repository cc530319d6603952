# Health-aware answers without sockets (docs/health.md): among the holders of a name on the
# network that holds it, only ready ones answer while one is; none ready: all answer (fail
# open); never another network; every name form and alias order; the order is kept across
# health changes; PTR and the client's own view do not change. Also readiness from inspect JSON
# and `health_status` events.
from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import dns.rdatatype
import pytest
from dns.rcode import NXDOMAIN

from resolver.answer import FORWARD, AliasOrder, LocalAnswer, Policy, decide
from resolver.model import ContainerInfo, ServicePort
from resolver.table import NameTable
from testkit.topology import Topology, attach, container, network
from watchers.discovery import ready_from_inspect
from watchers.snapshot import parse_snapshot
from watchers.translate import EventKind, classify_event

ALPHA = network("alpha", "172.40.0.0/24")
BETA = network("beta", "172.41.0.0/24")
ZONE = "zone.test"
# db1, db2, db3 share "db" on alpha in that registration order; db1 is also on beta.
DB1 = container("db1", attach(ALPHA, 2, "db"), attach(BETA, 2, "db"), hostname="dbhost",
                started="1")
DB2 = container("db2", attach(ALPHA, 3, "db"), hostname="dbhost", started="2")
DB3 = container("db3", attach(ALPHA, 4, "db"), hostname="dbhost", started="3")
BETA_DB = container("betadb", attach(BETA, 5, "db"), started="4")
CLIENT = container("client", attach(ALPHA, 100), attach(BETA, 100), started="5")
ADDRESS = {"db1": "172.40.0.2", "db2": "172.40.0.3", "db3": "172.40.0.4"}


def table(unready: set[str]) -> NameTable:
    containers = [replace(c, ready=c.name not in unready)
                  for c in (DB1, DB2, DB3, BETA_DB, CLIENT)]
    return Topology([ALPHA, BETA], containers).table()


def ask(t: NameTable, qname: str, policy: Policy, qtype: str = "A",
        client: str = "172.40.0.100") -> tuple[str, ...] | str:
    decision = decide(t.view_for(ip_address(client)), True, qname,
                      dns.rdatatype.from_text(qtype), policy)
    if decision is FORWARD:
        return "FORWARD"
    assert isinstance(decision, LocalAnswer)
    if decision.rcode == NXDOMAIN:
        return "NXDOMAIN"
    return tuple(r.rdata.to_text() for r in decision.records)


def names(*containers: str) -> tuple[str, ...]:
    return tuple(ADDRESS[c] for c in containers)


FIRST, ORDERED = Policy(), Policy(alias_order=AliasOrder.ORDERED)
IGNORE = Policy(health=False)
CASES = [
    # (not ready, policy, expected holders)
    pytest.param(set(), FIRST, names("db1"), id="all-ready-first"),
    pytest.param({"db1"}, FIRST, names("db2"), id="sick-first-fails-over"),
    pytest.param({"db1", "db2"}, FIRST, names("db3"), id="earliest-ready"),
    pytest.param({"db1", "db2", "db3"}, FIRST, names("db1"), id="none-ready-fails-open-first"),
    pytest.param({"db2"}, ORDERED, names("db1", "db3"), id="ordered-ready-only"),
    pytest.param({"db1", "db2", "db3"}, ORDERED, names("db1", "db2", "db3"),
                 id="none-ready-fails-open-ordered"),
    pytest.param({"db1"}, IGNORE, names("db1"), id="ignore-health"),
    pytest.param({"db1", "db3"}, Policy(health=False, alias_order=AliasOrder.ORDERED),
                 names("db1", "db2", "db3"), id="ignore-health-ordered"),
]
FORMS = ["db", "DB", "db.alpha", "dbhost", f"db.{ZONE}", f"db.alpha.{ZONE}"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("unready", "policy", "expected"), CASES)
def test_only_ready_holders_answer(form: str, unready: set[str], policy: Policy,
                                   expected: tuple[str, ...]) -> None:
    policy = replace(policy, domain=ZONE)
    assert ask(table(unready), form.lower(), policy) == expected


def test_shuffle_answers_the_ready_holders() -> None:
    got = ask(table({"db2"}), "db", Policy(alias_order=AliasOrder.SHUFFLE))
    assert sorted(got) == sorted(names("db1", "db3"))


def test_single_holder_always_answers() -> None:
    t = table({"db1", "db2", "db3"})
    assert ask(t, "db2", FIRST) == names("db2")
    assert ask(t, DB3.short_id, FIRST) == names("db3")


def test_sick_network_fails_open_rather_than_passing_to_a_later_one() -> None:
    # alpha comes first in the client's view: it holds "db" and fails open; beta's ready
    # holder is never used. `db.beta` asks beta itself, where health applies as usual.
    t = table({"db1", "db2", "db3"})
    assert ask(t, "db", ORDERED) == names("db1", "db2", "db3")
    assert ask(t, "db.beta", ORDERED) == ("172.41.0.5",)
    assert ask(table(set()), "db.beta", ORDERED) == ("172.41.0.2", "172.41.0.5")


def test_recovered_holder_answers_from_its_old_place() -> None:
    t = table(set())
    t.upsert_container(replace(DB1, ready=False))
    assert ask(t, "db", FIRST) == names("db2")
    t.upsert_container(DB1)
    assert ask(t, "db", FIRST) == names("db1")
    assert ask(t, "db", ORDERED) == names("db1", "db2", "db3")


def test_aaaa_comes_from_ready_holders_only() -> None:
    dual = network("dual", "172.42.0.0/24", ipv6="fd00:42::/64")
    v4only = container("v4only", attach(dual, 2, "svc", v6=False), started="1")
    sick6 = replace(container("sick6", attach(dual, 3, "svc"), started="2"), ready=False)
    client = container("c", attach(dual, 100), started="3")
    t = Topology([dual], [v4only, sick6, client]).table()
    assert ask(t, "svc", FIRST, "AAAA", "172.42.0.100") == ()  # NODATA: the ready one has none
    assert ask(t, "svc", FIRST, "A", "172.42.0.100") == ("172.42.0.2",)


def test_ptr_and_own_view_ignore_health() -> None:
    t = table({"db1", "db2", "db3", "client"})
    assert ask(t, "2.0.40.172.in-addr.arpa", FIRST, "PTR") == ("db1.alpha.",)
    sick_client: ContainerInfo = replace(CLIENT, ready=False)
    t.upsert_container(sick_client)
    assert ask(t, "db1", FIRST) == names("db1")  # it still sees its networks


@pytest.mark.parametrize(("state", "ready"), [
    ({}, True),
    ({"State": {"Running": True}}, True),
    ({"State": {"Health": {"Status": "healthy"}}}, True),
    ({"State": {"Health": {"Status": "none"}}}, True),
    ({"State": {"Health": {"Status": "starting"}}}, False),
    ({"State": {"Health": {"Status": "unhealthy"}}}, False),
    ({"State": {"Health": "garbage"}}, True),
    ({"State": "garbage"}, True),
])
def test_readiness_from_inspect(state: dict[str, Any], ready: bool) -> None:
    assert ready_from_inspect(state) is ready


@pytest.mark.parametrize("action", ["health_status: healthy", "health_status: unhealthy",
                                    "health_status: starting", "health_status"])
def test_health_events_reinspect_the_container(action: str) -> None:
    event = {"Type": "container", "Action": action, "Actor": {"ID": "abc"}, "timeNano": 5}
    got = classify_event(event)
    assert got.kind is EventKind.REFRESH_CONTAINER and got.container_id == "abc"


def test_a_snapshot_carries_health_and_services() -> None:
    """The snapshot source reads the engine's own inspect objects: readiness and offered
    ports come through it as through the live watcher."""
    data = Path(__file__).parent / "data"
    containers = [c for c in json.loads((data / "docker_containers.json").read_text())
                  if c["State"].get("Running")]
    sick = {**containers[0], "State": {**containers[0]["State"],
                                       "Health": {"Status": "unhealthy"}},
            "Config": {**containers[0]["Config"], "ExposedPorts": {"8080/tcp": {}}}}
    document = {"scopedns_snapshot": 1, "taken_at": "2026-11-28T14:00:00Z",
                "networks": json.loads((data / "docker_networks.json").read_text()),
                "containers": [sick, *containers[1:]]}
    state = parse_snapshot(document, "test")
    by_id = {c.id: c for c in state.containers}
    assert by_id[sick["Id"]].ready is False
    assert ServicePort("8080", "tcp", 8080) in by_id[sick["Id"]].services
    assert all(by_id[c["Id"]].ready for c in containers[1:] if c["Id"] in by_id)
