# Property tests of docs/views.md, order.md, health.md, srv.md and failures.md against
# tests/reference_model.py: hypothesis plays random Docker histories (networks created and
# removed, containers run, stopped, started again, renamed, connected and disconnected,
# healthchecks flipping, events delivered late or missed while the engine is away,
# reconnects, periodic reconciles, scopedns restarts) on an in-memory engine, as inspect JSON
# and events, and the real Docker watcher (watchers/docker.py, run step by step by
# tests/stepped_watcher.py) keeps a NameTable from them. After every step every client asks
# every name: the table's answers (answer.decide on the client's view, and the wire replies of
# long-lived Handlers) must be the model's, and no answer may carry an address from a network
# the client is not on.
# SCOPEDNS_PROPERTY_EXAMPLES=N runs N histories instead of the CI default; -s prints the totals.
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing
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

from resolver import views
from resolver.model import LinkAlias, ServicePort
from tests.docker_json import publish
from tests.isolation_checks import TOTALS, compare_everything
from tests.memory_engine import MemoryEngine
from tests.reference_model import ReferenceModel
from tests.stepped_watcher import SteppedWatcher
from tests.toy_engine import BRIDGE, SERVICE_POOL, Engine, Plan
from tests.watched_engine import WatchedEngine

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
seeds_st = st.integers(0, 2**16)  # the order of a full listing


class History(RuleBasedStateMachine):
    """One random engine history. Each step runs docker commands on the toy engine, which
    logs their events; the real watcher follows them into the table and the model follows the
    same events, both against what the engine holds once the step is over
    (tests/watched_engine.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.world = WatchedEngine()
        self.engine = self.world.engine
        TOTALS["histories"] += 1

    def teardown(self) -> None:
        """A history ends with the engine there, so that every outage's replay is checked."""
        try:
            if not self.world.live:
                self.world.reconnect(seed=0)
                self.table_answers_as_the_model()
        finally:
            self.world.close()

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
        self.engine.new_network(name, internal, dual)
        self.world.step_done()

    @precondition(lambda self: len(self.engine.networks) > 1)
    @rule(pick=pick_st)
    def remove_network(self, pick: int) -> None:
        self.engine.remove_network(pick_one([n for n in self.engine.networks
                                             if n != BRIDGE.id], pick))
        self.world.step_done()

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
        self.engine.start(sim, new_address=True)
        self.world.step_done()

    @precondition(lambda self: self.engine.running())
    @rule(pick=pick_st)
    def stop(self, pick: int) -> None:
        self.engine.stop(pick_one(self.engine.running(), pick))
        self.world.step_done()

    @precondition(lambda self: self.engine.stopped())
    @rule(pick=pick_st, new_address=st.booleans())
    def start_again(self, pick: int, new_address: bool) -> None:
        self.engine.start(pick_one(self.engine.stopped(), pick), new_address)
        self.world.step_done()

    @precondition(lambda self: self.engine.running())
    @rule(pick=pick_st, new_address=st.booleans(), late=st.booleans())
    def restart(self, pick: int, new_address: bool, late: bool) -> None:
        """`docker restart`: stop, then start (the address may change). With `late`, its `die`
        comes again after the start, stamped before it: stale, it must not remove the
        container (docs/failures.md)."""
        self.engine.restart(pick_one(self.engine.running(), pick), new_address)
        if late:
            self.engine.late(next(i for i in range(len(self.engine.log) - 1, -1, -1)
                                  if self.engine.log[i].action == "die"))
        self.world.step_done()

    @precondition(lambda self: any(c.health for c in self.engine.running()))
    @rule(pick=pick_st, status=status_st)
    def health_changes(self, pick: int, status: str) -> None:
        """A healthcheck flips: the `health_status` event makes the watcher re-inspect."""
        sim = pick_one([c for c in self.engine.running() if c.health], pick)
        self.engine.health_changes(sim, status)
        self.world.step_done()

    @precondition(lambda self: self.engine.running())
    @rule(pick=pick_st, net=pick_st, aliases=aliases_st, links=links_st)
    def connect(self, pick: int, net: int, aliases: tuple[str, ...],
                links: tuple[LinkAlias, ...]) -> None:
        """`docker network connect [--alias A] [--link T:L]`."""
        sim = pick_one(self.engine.running(), pick)
        free = [n for n in self.engine.networks if n not in sim.plans]
        if free:
            self.engine.connect(sim, pick_one(free, net), Plan(0, aliases, links))
            self.world.step_done()

    @precondition(lambda self: len(self.engine.running()) > 1)
    @rule(name=network_names_st, order=st.permutations(range(len(CONTAINER_NAMES))),
          away=st.booleans())
    def join_together(self, name: str, order: list[int], away: bool) -> None:
        """`docker compose up` with a project network: the network is created if need be, and
        the running containers not on it join it with the alias `app`, one after another in a
        drawn order. They hold it in the order they joined, whatever their start times, also
        when the engine was away meanwhile (`away`: it goes first; docs/order.md)."""
        network = next((n for n in self.engine.networks.values() if n.name == name), None)
        if network is None and len(self.engine.networks) <= MAX_NETWORKS:
            network = self.engine.new_network(name, internal=False, dual=False)
        if network is None:
            return
        if away and self.world.live:
            self.world.goes_away()
        joining = [c for c in self.engine.running() if network.id not in c.plans]
        for i in order:
            if i < len(joining):
                self.engine.connect(joining[i], network.id, Plan(0, ("app",)))
        self.world.step_done()

    @precondition(lambda self: any(c.left for c in self.engine.running()))
    @rule(pick=pick_st, net=pick_st)
    def connect_again(self, pick: int, net: int) -> None:
        """Back to a network it left, with the aliases and links it had there."""
        sim = pick_one([c for c in self.engine.running() if c.left], pick)
        nid = pick_one(list(sim.left), net)
        self.engine.connect(sim, nid, sim.left.pop(nid))
        self.world.step_done()

    @precondition(lambda self: any(c.plans for c in self.engine.running()))
    @rule(pick=pick_st, net=pick_st)
    def disconnect(self, pick: int, net: int) -> None:
        sim = pick_one([c for c in self.engine.running() if c.plans], pick)
        self.engine.disconnect(sim, pick_one(list(sim.plans), net))
        self.world.step_done()

    @precondition(lambda self: self.engine.containers)
    @rule(pick=pick_st, name=names_st)
    def rename(self, pick: int, name: str) -> None:
        sim = pick_one(list(self.engine.containers.values()), pick)
        if any(c.name == name for c in self.engine.containers.values()):
            return
        self.engine.rename(sim, name)
        self.world.step_done()

    @precondition(lambda self: self.engine.stopped())
    @rule(pick=pick_st)
    def remove_stopped(self, pick: int) -> None:
        self.engine.remove(pick_one(self.engine.stopped(), pick))
        self.world.step_done()

    @precondition(lambda self: self.world.live)
    @rule(pick=st.integers(0, 2**16))
    def late_event(self, pick: int) -> None:
        """An event already delivered comes again, late and stamped as it was (a duplicate, or
        one out of order): stale, it may make the watcher re-inspect but never removes on its
        own word (docs/failures.md). Mostly a die, stop or disconnect of a container that is
        running (again) now, where the rule matters."""
        docker, running = self.world.docker, {c.id for c in self.engine.running()}
        older = [i for i, e in enumerate(docker.events) if e["timeNano"] < docker.clock]
        removals = [i for i in older if self.engine.log[i].action in ("die", "stop", "disconnect")
                    and (self.engine.log[i].container or self.engine.log[i].actor) in running]
        if older:
            self.engine.late(pick_one(removals or older, pick))
            self.world.step_done()

    # ----- the engine connection and scopedns itself ---------------------------------------

    @precondition(lambda self: self.world.live)
    @rule()
    def engine_goes_away(self) -> None:
        self.world.goes_away()

    @precondition(lambda self: not self.world.live)
    @rule(seed=seeds_st)
    def engine_comes_back(self, seed: int) -> None:
        self.world.reconnect(seed)

    @rule(event=st.sampled_from(("stream ends", "periodic resync", "scopedns restarts")),
          seed=seeds_st)
    def connection(self, event: str, seed: int) -> None:
        """One rule for the rest of what happens to the engine connection and scopedns
        itself, so that they stay rarer than container events; the first two only while the
        engine is there."""
        if event == "scopedns restarts":
            self.scopedns_restarts(seed)
        elif self.world.live and event == "stream ends":
            self.world.reconnect(seed)
        elif self.world.live:
            self.world.periodic_resync(seed)

    def scopedns_restarts(self, seed: int) -> None:
        """docs/order.md: a new table rebuilds the order from the engine alone; another new
        scopedns, its listing in another order, answers the same."""
        self.world.scopedns_restarts(seed)
        self.world.docker.listing_seed = seed + 1
        with closing(SteppedWatcher(self.world.docker)) as other:
            compare_everything(other.table, self.world.model, self.engine)
        TOTALS["fresh_tables"] += 2

    @invariant()
    def table_answers_as_the_model(self) -> None:
        TOTALS["steps"] += 1
        world = self.world
        compare_everything(world.scopedns.table, world.model, self.engine, world.handlers)


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
    (start time, creation time, ID): new watchers given the same state listed in two orders
    answer every client as the model rebuilt from that state."""
    model = ReferenceModel()
    model.resynced(*engine.listing())
    docker = MemoryEngine()
    publish(engine, docker, ())
    for seed in seeds:
        docker.listing_seed = seed
        with closing(SteppedWatcher(docker)) as scopedns:
            compare_everything(scopedns.table, model, engine)
        TOTALS["fresh_tables"] += 1


def test_indexed_views_answer_every_client_as_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same histories with every view indexed (resolver.views.ViewIndex, which only views
    of more than SMALL_VIEW networks get in production): the index answers as the walk does."""
    monkeypatch.setattr(views, "SMALL_VIEW", 0)
    run_state_machine_as_test(History, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
