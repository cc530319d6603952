# Property tests of docs/views.md and order.md (and resyncs) against tests/reference_model.py:
# hypothesis plays random Docker histories (networks created and removed, containers run,
# stopped, started again, renamed, connected and disconnected, events missed while the engine is
# away, full reconciles, scopedns restarts) into a NameTable through the calls the Docker watcher
# makes. After every step every client asks every name: the table's answers (answer.decide on
# the client's view, and the wire replies of long-lived Handlers) must be the model's, and no
# answer may carry an address from a network the client is not on.
# SCOPEDNS_PROPERTY_EXAMPLES=N runs N histories instead of the CI default; -s prints the totals.
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from resolver.handler import Handler
from resolver.model import LinkAlias, ServicePort
from resolver.table import NameTable
from tests.isolation_checks import ORDERS, TOTALS, compare_everything
from tests.reference_model import (
    BRIDGE,
    SERVICE_POOL,
    Engine,
    Plan,
    ReferenceModel,
    SimContainer,
)

# CI: 20 histories of up to 20 steps, and 40 engine states listed in two orders.
EXAMPLES = int(os.environ.get("SCOPEDNS_PROPERTY_EXAMPLES", "0")) or 20
STEPS = 20
# Small pools, so that names, aliases, hostnames, link aliases and network suffixes collide.
NETWORK_NAMES = ("alpha", "beta", "Beta", "c", "b.c")
CONTAINER_NAMES = ("web", "Web", "db", "a", "a.b", "x")
ALIASES = ("app", "db", "a.b", "WEB", "b")
LINK_ALIASES = ("lnk", "db", "App", "web")
LINK_TARGETS = ("web", "db", "app", "a.b", "x", "none")
MAX_NETWORKS = 4  # user-defined ones alive at once
T = TypeVar("T")


# ----- histories -----------------------------------------------------------------------------

names_st = st.sampled_from(CONTAINER_NAMES)
# Half the endpoints carry the alias "app", so that shared names and their order are common.
aliases_st = st.just(("app",)) | st.lists(st.sampled_from(ALIASES), max_size=2,
                                            unique=True).map(tuple)
links_st = st.dictionaries(st.sampled_from(LINK_ALIASES), st.sampled_from(LINK_TARGETS),
                           max_size=2).map(lambda d: tuple(LinkAlias(a, t) for a, t in d.items()))
pick_st = st.integers(0, 9)
picks_st = st.lists(pick_st, min_size=1, max_size=3, unique=True)
network_names_st = st.sampled_from(NETWORK_NAMES)
hostname_st = st.none() | st.sampled_from(CONTAINER_NAMES + ALIASES)
# No healthcheck, or one (it starts as `starting`); exposed ports and label-named services.
healthcheck_st = st.booleans()
services_st = st.lists(st.sampled_from(SERVICE_POOL), max_size=3, unique=True).map(tuple)
status_st = st.sampled_from(("starting", "healthy", "unhealthy"))


class History(RuleBasedStateMachine):
    """One random engine history; the table and the model follow it step by step, through the
    table calls the Docker watcher makes (watchers/docker.py), unless the engine is away."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine()
        self.live = True  # False: events are being missed (the engine connection is down)
        self._fresh(seed=0)
        TOTALS["histories"] += 1

    def _fresh(self, seed: int) -> None:
        """scopedns (re)starts: an empty table, then a first full sync."""
        self.table, self.model = NameTable(), ReferenceModel()
        self.handlers = {order: Handler(self.table, p) for order, p in ORDERS.items()}
        self.reconcile(seed)

    @initialize(networks=st.lists(st.tuples(network_names_st, st.booleans(), st.booleans()),
                                  min_size=1, max_size=3),
                containers=st.lists(st.tuples(names_st, hostname_st, picks_st, aliases_st,
                                              links_st, healthcheck_st, services_st),
                                    min_size=1, max_size=4))
    def topology(self, networks: list[tuple[str, bool, bool]],
                 containers: list[tuple[str, str | None, list[int], tuple[str, ...],
                                        tuple[LinkAlias, ...], bool,
                                        tuple[ServicePort, ...]]]) -> None:
        """A few networks and running containers to start from."""
        for network in networks:
            self.create_network(*network)
        for container in containers:
            self.run(*container)

    # ----- networks ----------------------------------------------------------------------

    @precondition(lambda self: len(self.engine.networks) <= MAX_NETWORKS)
    @rule(name=network_names_st, internal=st.booleans(), dual=st.booleans())
    def create_network(self, name: str, internal: bool, dual: bool) -> None:
        if any(n.name == name for n in self.engine.networks.values()):
            return  # network names are unique
        network = self.engine.new_network(name, internal, dual)
        if self.live:
            self.table.upsert_network(network)
            self.model.network_created(network)

    @precondition(lambda self: len(self.engine.networks) > 1)
    @rule(pick=pick_st)
    def remove_network(self, pick: int) -> None:
        nid = pick_one([n for n in self.engine.networks if n != BRIDGE.id], pick)
        del self.engine.networks[nid]
        for sim in self.engine.containers.values():
            sim.plans.pop(nid, None)
            sim.left.pop(nid, None)
        if self.live:
            self.table.remove_network(nid)
            self.model.network_removed(nid)

    # ----- containers ----------------------------------------------------------------------

    @precondition(lambda self: len(self.engine.containers) < len(CONTAINER_NAMES))
    @rule(name=names_st, hostname=hostname_st, picks=picks_st, aliases=aliases_st,
          links=links_st, healthcheck=healthcheck_st, services=services_st)
    def run(self, name: str, hostname: str | None, picks: list[int],
            aliases: tuple[str, ...], links: tuple[LinkAlias, ...], healthcheck: bool = False,
            services: tuple[ServicePort, ...] = ()) -> None:
        """`docker run --name N [--hostname H] --network X --network-alias A --link T:L
        [--health-cmd ...] [--expose P] [-l scopedns.srv.NAME=P]`, and more networks: the links
        go to the first network."""
        if any(c.name == name for c in self.engine.containers.values()):
            return  # container names are unique
        sim = self.engine.new_container(name, hostname)
        sim.health = "starting" if healthcheck else None
        sim.services = services
        for i, pick in enumerate(picks):
            nid = pick_one(list(self.engine.networks), pick)
            sim.plans.setdefault(nid, Plan(0, aliases, links if i == 0 else ()))
        self._start(sim, new_address=True)

    @precondition(lambda self: self.engine.running())
    @rule(pick=pick_st)
    def stop(self, pick: int) -> None:
        sim = pick_one(self.engine.running(), pick)
        sim.running = False
        if self.live:
            self.table.remove_container(sim.id)
            self.model.container_stopped(sim.id)

    @precondition(lambda self: self.engine.stopped())
    @rule(pick=pick_st, new_address=st.booleans())
    def start_again(self, pick: int, new_address: bool) -> None:
        self._start(pick_one(self.engine.stopped(), pick), new_address)

    @precondition(lambda self: self.engine.running())
    @rule(pick=pick_st, new_address=st.booleans())
    def restart(self, pick: int, new_address: bool) -> None:
        """`docker restart`: stop, then start (the address may change)."""
        sim = pick_one(self.engine.running(), pick)
        self.stop(self.engine.running().index(sim))
        self._start(sim, new_address)

    @precondition(lambda self: any(c.health for c in self.engine.running()))
    @rule(pick=pick_st, status=status_st)
    def health_changes(self, pick: int, status: str) -> None:
        """A healthcheck flips: the `health_status` event makes the watcher re-inspect."""
        sim = pick_one([c for c in self.engine.running() if c.health], pick)
        sim.health = status
        self._upsert(sim)

    def _start(self, sim: SimContainer, new_address: bool) -> None:
        if sim.health is not None:
            sim.health = "starting"  # the engine starts every healthcheck over
        for nid, plan in sim.plans.items():
            plan.host = self.engine.free_host(nid, 0 if new_address else plan.host)
        sim.running, sim.started_at = True, self.engine.tick()
        self._upsert(sim)

    @precondition(lambda self: self.engine.running())
    @rule(pick=pick_st, net=pick_st, aliases=aliases_st, links=links_st)
    def connect(self, pick: int, net: int, aliases: tuple[str, ...],
                links: tuple[LinkAlias, ...]) -> None:
        """`docker network connect [--alias A] [--link T:L]`."""
        sim = pick_one(self.engine.running(), pick)
        free = [n for n in self.engine.networks if n not in sim.plans]
        if free:
            self._join(sim, pick_one(free, net), Plan(0, aliases, links))

    @precondition(lambda self: any(c.left for c in self.engine.running()))
    @rule(pick=pick_st, net=pick_st)
    def connect_again(self, pick: int, net: int) -> None:
        """Back to a network it left, with the aliases and links it had there."""
        sim = pick_one([c for c in self.engine.running() if c.left], pick)
        nid = pick_one(list(sim.left), net)
        self._join(sim, nid, sim.left.pop(nid))

    def _join(self, sim: SimContainer, network_id: str, plan: Plan) -> None:
        plan.host = self.engine.free_host(network_id, plan.host)
        sim.plans[network_id] = plan
        self._upsert(sim)

    @precondition(lambda self: any(c.plans for c in self.engine.running()))
    @rule(pick=pick_st, net=pick_st)
    def disconnect(self, pick: int, net: int) -> None:
        sim = pick_one([c for c in self.engine.running() if c.plans], pick)
        nid = pick_one(list(sim.plans), net)
        sim.left[nid] = sim.plans.pop(nid)
        self._upsert(sim)

    @precondition(lambda self: self.engine.containers)
    @rule(pick=pick_st, name=names_st)
    def rename(self, pick: int, name: str) -> None:
        sim = pick_one(list(self.engine.containers.values()), pick)
        if any(c.name == name for c in self.engine.containers.values()):
            return
        sim.name = name
        self.engine.ever_names.add(name)
        if sim.running:
            self._upsert(sim)

    @precondition(lambda self: self.engine.stopped())
    @rule(pick=pick_st)
    def remove_stopped(self, pick: int) -> None:
        del self.engine.containers[pick_one(self.engine.stopped(), pick).id]

    def _upsert(self, sim: SimContainer) -> None:
        """start, connect, disconnect, rename: the watcher re-inspects the container."""
        if self.live:
            info = self.engine.info(sim)
            self.table.upsert_container(info)
            self.model.container_is(info)

    # ----- the engine connection and scopedns itself ---------------------------------------

    @rule(event=st.sampled_from(("engine goes away", "reconcile", "scopedns restarts")),
          seed=st.integers(0, 2**16))
    def connection(self, event: str, seed: int) -> None:
        """One rule for what happens to the engine connection and scopedns itself, so that
        they stay rarer than container events."""
        if event == "engine goes away":
            self.live = False  # events are missed; both keep the last table (docs/failures.md)
        elif event == "reconcile":
            self.reconcile(seed)
        else:
            self.scopedns_restarts(seed)

    def reconcile(self, seed: int) -> None:
        """A full sync (the first one, after a reconnect, or the periodic one), listed in any
        order."""
        state = self.engine.state(seed)
        self.table.replace_all(state)
        self.model.resynced(state.networks, state.containers)
        self.live = True

    def scopedns_restarts(self, seed: int) -> None:
        """docs/order.md: a new table rebuilds the order from the engine alone; another fresh table
        fed the same state listed in another order answers the same."""
        self._fresh(seed)
        other = NameTable()
        other.replace_all(self.engine.state(seed + 1))
        compare_everything(other, self.model, self.engine)
        TOTALS["fresh_tables"] += 2

    @invariant()
    def table_answers_as_the_model(self) -> None:
        TOTALS["steps"] += 1
        compare_everything(self.table, self.model, self.engine, self.handlers)


def pick_one(items: list[T], pick: int) -> T:
    return items[pick % len(items)]


@pytest.fixture(scope="module", autouse=True)
def _print_totals() -> Iterator[None]:
    """How much one run compared (shown with -s)."""
    yield
    print(f"\nisolation property: {TOTALS}")


def test_table_answers_every_client_as_the_model() -> None:
    run_state_machine_as_test(History, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


@st.composite
def engines(draw: st.DrawFn) -> Engine:
    """An engine with networks and containers, some stopped, created and started on a coarse
    clock (so start and creation times tie now and then)."""
    engine = Engine()
    networks = draw(st.lists(st.tuples(network_names_st, st.booleans(), st.booleans()),
                             min_size=1, max_size=MAX_NETWORKS, unique_by=lambda n: n[0]))
    for name, internal, dual in networks:
        engine.new_network(name, internal, dual)
    containers = draw(st.lists(st.tuples(names_st, hostname_st, picks_st, aliases_st,
                                         links_st, st.booleans()),
                               max_size=len(CONTAINER_NAMES), unique_by=lambda c: c[0]))
    for name, hostname, picks, aliases, links, running in containers:
        sim = engine.new_container(name, hostname)
        for i, pick in enumerate(picks):
            nid = pick_one(list(engine.networks), pick)
            sim.plans.setdefault(nid, Plan(engine.free_host(nid, 0), aliases,
                                           links if i == 0 else ()))
        sim.running, sim.started_at = running, engine.tick()
    return engine


@settings(max_examples=2 * EXAMPLES, deadline=None)
@given(engine=engines(), seeds=st.lists(st.integers(0, 2**16), min_size=2, max_size=2,
                                         unique=True))
def test_fresh_table_does_not_depend_on_listing_order(engine: Engine, seeds: list[int]) -> None:
    """docs/order.md: after scopedns restarts, the order is rebuilt from the engine's state alone
    (start time, creation time, ID): fresh tables fed the same state listed in two orders
    answer every client as the model rebuilt from that state."""
    model = ReferenceModel()
    state = engine.state(seeds[0])
    model.resynced(state.networks, state.containers)
    for seed in seeds:
        table = NameTable()
        table.replace_all(engine.state(seed))
        compare_everything(table, model, engine)
        TOTALS["fresh_tables"] += 1
