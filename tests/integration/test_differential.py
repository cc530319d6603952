"""Randomized differential test: scopedns against Docker's embedded DNS (127.0.0.11).

From a seed (random.Random(seed)) a topology is built on the real engine: 2-3 networks (the
first plain, the others two distinct of plain / --internal / dual-stack), 4-7 containers with
--network-alias, --hostname, --link, extra networks (`network connect`, with and without
--alias/--link), then 2-4 random changes (stop, start, rename, connect, disconnect).
Every running container then asks every name of the topology (container names, old names,
short IDs, hostnames, aliases, link aliases, name.network, capitalised variants, `.invalid`
names) for A (and AAAA when it is on the dual-stack network), and PTR for every address, over
UDP from its own netns: at 127.0.0.11, at the lab's scopedns (port 53; --alias-order from
SCOPEDNS_IT_SERVER_ARGS, default `first`) and at a second scopedns with --alias-order ordered
(port 5353), both in the sidecar's netns. Answers are compared as (rcode, set of rdata).
Docker is the reference except where a named rule below encodes a deliberate difference
(README "Where scopedns differs"); nothing else is forgiven. No scopedns answer may carry an
address (or a PTR target) on a network the client is not attached to.

Under takeover (conftest.py, the lab's ways) the lab's scopedns is instead a host process with
`serve --takeover`: a client asks it at its own 127.0.0.11:53, and Docker at the port Docker's
DNAT points to in the same namespace; every answer's origin is checked (takeover_way.py). The
`ordered` instance stays in the sidecar's netns: it is only the reference for registration order.

Seeds: DEFAULT_SEEDS, or SCOPEDNS_DIFF_SEEDS="1 2 3"; under takeover TAKEOVER_SEEDS, or
SCOPEDNS_DIFF_TAKEOVER_SEEDS. A failure shows seed, client, question, every answer and the
topology; rerun one topology with SCOPEDNS_DIFF_SEEDS=<seed>.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import time
from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_interface
from typing import Any

import dns.reversename
import pytest

from .conftest import DIRECT, EXTRA_SERVER_ARGS, ORACLE_ONLY, WAYS, Lab
from .harness import DOCKER_DNS, NO_REPLY, Answer, dig_batch, docker
from .random_topology import ALIAS_WORDS, Topology, build, dismantle

pytestmark = pytest.mark.docker

DOCKER_PREFIX = "sdiff-"  # read by the `lab` fixture: every container and network is sdiff-*
DEFAULT_SEEDS = (3, 4, 9)  # together: dual-stack, internal, every change kind, every rule
SEEDS = [int(s) for s in os.environ.get("SCOPEDNS_DIFF_SEEDS", "").split()] or DEFAULT_SEEDS
TAKEOVER_SEEDS = [int(s) for s in os.environ.get("SCOPEDNS_DIFF_TAKEOVER_SEEDS", "").split()
                  ] or (9,)
ORDERED_PORT = 5353
SETTLE_SECONDS = 6.0  # scopedns learns from events: a disagreement is re-asked until then
SERVERS = ("docker", "main", "ordered")


# --- Who asks what ----------------------------------------------------------------------------

Subnet = IPv4Network | IPv6Network
Facts = dict[str, dict[str, Any]]  # container name -> `docker inspect` record


@dataclass(frozen=True)
class Client:
    name: str
    pid: int
    subnets: dict[str, tuple[Subnet, ...]]  # every network it is attached to -> its subnets
    all_internal: bool
    dual: bool  # attached to the dual-stack network: asks AAAA too
    via: str  # the network on which it asks scopedns (any of its own: the view is the same)
    server: str  # the sidecar's (scopedns's) address there


def inspect_all(names: list[str]) -> Facts:
    return {fact["Name"].lstrip("/"): fact for fact in json.loads(docker("inspect", *names))}


def endpoint_subnets(endpoint: dict[str, Any]) -> tuple[Subnet, ...]:
    found = [ip_interface(f"{endpoint['IPAddress']}/{endpoint['IPPrefixLen']}").network]
    if endpoint.get("GlobalIPv6Address"):
        found.append(ip_interface(f"{endpoint['GlobalIPv6Address']}/"
                                  f"{endpoint['GlobalIPv6PrefixLen']}").network)
    return tuple(found)


def clients_of(topo: Topology, facts: Facts, sidecar: str) -> list[Client]:
    rng = random.Random(topo.seed + 2)
    sidecar_endpoints = facts[sidecar]["NetworkSettings"]["Networks"]
    clients = []
    for box in topo.boxes:
        fact = facts[box.name]
        if not fact["State"]["Running"]:
            continue
        endpoints = fact["NetworkSettings"]["Networks"]
        via = rng.choice(sorted(endpoints))
        kinds = [topo.kinds.get(net) for net in endpoints]
        clients.append(Client(box.name, int(fact["State"]["Pid"]),
                              {net: endpoint_subnets(ep) for net, ep in endpoints.items()},
                              all(kind == "internal" for kind in kinds), "dual" in kinds,
                              via, sidecar_endpoints[via]["IPAddress"]))
    return clients


@dataclass(frozen=True)
class Questions:
    """What every client asks: names (A, and AAAA on a dual-stack network) and PTR names.
    `spelled` maps each capitalised variant to the name as the engine spells it."""

    names: list[str]
    ptrs: list[str]
    spelled: dict[str, str]


def questions_for(topo: Topology, facts: Facts, sidecar: str, run_id: str) -> Questions:
    rng = random.Random(topo.seed + 1)
    names, nets = [sidecar], sorted(topo.kinds)
    for box in topo.boxes:
        names += [box.name, *box.old_names, facts[box.name]["Id"][:12]]
        names += [box.hostname] if box.hostname else []
        names.append(f"{box.name}.{rng.choice(nets)}")
    names += sorted(topo.aliases | topo.link_aliases)
    box, net = rng.choice(topo.boxes), rng.choice(nets)
    spelled = {box.name.swapcase(): box.name, f"{box.name}.{net.swapcase()}": f"{box.name}.{net}"}
    for word in sorted(topo.link_aliases)[:1]:  # a link alias: capitalised, with a suffix
        names.append(f"{word}.{net}")
        spelled[word.upper()] = word
    names += [*spelled.values(), *spelled, f"nosuch-{run_id}.invalid",
              f"{rng.choice(ALIAS_WORDS)}.invalid"]
    ptrs = []
    for box in topo.boxes:
        for endpoint in facts[box.name]["NetworkSettings"]["Networks"].values():
            for key in ("IPAddress", "GlobalIPv6Address"):
                if endpoint.get(key):
                    ptrs.append(dns.reversename.from_address(endpoint[key]).to_text())
    return Questions(list(dict.fromkeys(names)), ptrs, spelled)


# --- The deliberate differences (README "Where scopedns differs"), one named rule each ------
# Not compared at all: TTLs (difference 2) and record order (Docker shuffles): only the rcode
# and the set of rdata of the asked type count.

SERVFAIL = Answer("SERVFAIL", frozenset(), "")


def forwarded(name: str, answer: Answer) -> bool:
    """Not a local answer: Docker gives NXDOMAIN only by relaying the fake upstream, and no
    `.invalid` name is local (no network is called `invalid`)."""
    return answer.rcode in ("NXDOMAIN", "SERVFAIL", NO_REPLY) or name.endswith(".invalid")


def rule_case_folded(name: str, questions: Questions) -> str | None:
    """docs/differences.md #3: scopedns matches link aliases and `.network` suffixes without
    regard to case, Docker exactly (`LNK` is forwarded there). A name whose case was changed
    is judged against Docker's answer to the name as the engine spells it (also asked)."""
    return questions.spelled.get(name)


def rule_internal_never_forwarded(client: Client, name: str, reference: Answer) -> Answer | None:
    """docs/differences.md #19: a client whose networks are all --internal is never forwarded
    for: SERVFAIL where Docker 20.10 forwards (relaying the fake upstream's answer, or none)."""
    return SERVFAIL if client.all_internal and forwarded(name, reference) else None


def rule_first_registered(ordered: Answer, qtype: str) -> Answer:
    """docs/differences.md #1: with --alias-order first, the default, several holders of a
    name give one record, the earliest registered: the first record of the `ordered`
    instance's answer (whose whole set is compared with Docker's)."""
    return Answer(ordered.rcode, frozenset(in_order(ordered, qtype)[:1]), "")


def in_order(answer: Answer, qtype: str) -> list[str]:
    """The rdata of the asked type, in the order of the reply."""
    return [fields[4].strip() for fields in (line.split(None, 4) for line in
            answer.text.splitlines() if line and not line.startswith(";"))
            if len(fields) == 5 and fields[3].upper() == qtype]


# --- Judging ----------------------------------------------------------------------------------

Seen = dict[tuple[str, str, str], Answer]  # (server, name, qtype) -> answer


@dataclass(frozen=True)
class Verdict:
    client: Client
    name: str
    qtype: str
    seen: dict[str, Answer]  # server -> answer
    reference: Answer  # what scopedns `ordered` must answer: Docker's, after the rules
    rules: tuple[str, ...]
    problems: tuple[str, ...]


def ask(lab: Lab, client: Client, questions: list[tuple[str, str]]) -> Seen:
    where = {"docker": (DOCKER_DNS, 53), "main": (client.server, 53),
             "ordered": (client.server, ORDERED_PORT)}
    if lab.takeover is not None:  # main: the client's own 127.0.0.11; Docker at its own port
        endpoints = lab.takeover.endpoints(client.pid)
        if endpoints is None:
            pytest.fail(f"{client.name} was not taken over", pytrace=False)
        where["docker"], where["main"] = endpoints
        lab.takeover.asked += len(questions)
    batch = [(server, name, qtype) for name, qtype in questions for server in SERVERS]
    answers = dig_batch(client.pid, [(*where[s], name, qtype) for s, name, qtype in batch])
    return dict(zip(batch, answers, strict=True))


def judge(lab: Lab, client: Client, name: str, qtype: str, seen: Seen, asked: Questions,
          main_order: str) -> Verdict:
    rules: list[str] = []
    folded = rule_case_folded(name, asked)
    reference = seen["docker", folded or name, qtype]
    rules += ["case_folded"] * (folded is not None and reference != seen["docker", name, qtype])
    internal = rule_internal_never_forwarded(client, name, reference)
    if internal is not None:
        reference, rules = internal, [*rules, "internal_never_forwarded"]
    answers = {server: seen[server, name, qtype] for server in SERVERS}
    problems = []
    if answers["ordered"] != reference:
        problems.append(f"ordered (:{ORDERED_PORT}, --alias-order ordered): want {reference}")
    want_main = reference
    if main_order == "first":
        want_main = rule_first_registered(answers["ordered"], qtype)
        rules += ["first_registered"] * (len(answers["ordered"].rdata) > 1)
    if answers["main"] != want_main:
        problems.append(f"main (:53, --alias-order {main_order}): want {want_main}")
    for server in ("main", "ordered"):
        stray = [] if name.endswith(".invalid") else off_network(client, qtype, answers[server])
        if stray:
            problems.append(f"{server} answers {stray}: on no network of the client")
    for server, who in (("main", "scopedns"), ("docker", "docker")):
        origin = lab.origin_problem(who, answers[server])
        if origin:
            problems.append(f"{server}'s answer {origin}")
    return Verdict(client, name, qtype, answers, reference, tuple(rules), tuple(problems))


def off_network(client: Client, qtype: str, answer: Answer) -> list[str]:
    """rdata of a scopedns answer that belongs to no network the client is attached to."""
    if qtype == "PTR":
        return [target for target in answer.rdata
                if not any(target.endswith(f".{net}.") for net in client.subnets)]
    subnets = [subnet for group in client.subnets.values() for subnet in group]
    return [a for a in answer.rdata if not any(ip_address(a) in s for s in subnets)]


def judge_client(lab: Lab, client: Client, asked: Questions, main_order: str
                 ) -> list[Verdict]:
    """Ask everything once; re-ask what disagrees until it agrees or SETTLE_SECONDS pass."""
    questions = [(name, "A") for name in asked.names] + [(p, "PTR") for p in asked.ptrs]
    questions += [(name, "AAAA") for name in asked.names if client.dual]
    seen = ask(lab, client, questions)
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        verdicts = [judge(lab, client, n, qtype, seen, asked, main_order)
                    for n, qtype in questions]
        again = {(n, t) for v in verdicts if v.problems for n, t in
                 ((v.name, v.qtype), (asked.spelled.get(v.name, v.name), v.qtype))}
        if not again or time.monotonic() > deadline:
            return verdicts
        time.sleep(0.3)
        seen.update(ask(lab, client, sorted(again)))


# --- Reporting --------------------------------------------------------------------------------


def describe(topo: Topology, facts: Facts) -> str:
    """The topology: what was done, then every container's endpoints as the engine has them."""
    lines = [f"topology of seed {topo.seed} (rerun: SCOPEDNS_DIFF_SEEDS={topo.seed}):"]
    lines += [f"  $ {entry}" for entry in topo.log]
    for box in topo.boxes:
        fact = facts[box.name]
        state = "running" if fact["State"]["Running"] else "stopped"
        lines.append(f"  {box.name} ({state}, id {fact['Id'][:12]}, was {box.old_names}):")
        for net, ep in fact["NetworkSettings"]["Networks"].items():
            lines.append(f"    {net} [{topo.kinds.get(net)}] {ep['IPAddress']} "
                         f"{ep.get('GlobalIPv6Address') or ''} aliases={ep.get('Aliases')} "
                         f"links={ep.get('Links')}")
    return "\n".join(lines)


def explain(verdict: Verdict) -> str:
    client = verdict.client
    lines = [f"client {client.name} (networks {sorted(client.subnets)}, via {client.via}) asks "
             f"{verdict.name} {verdict.qtype}; rules {list(verdict.rules) or 'none'}"]
    lines += [f"    {server:8} {answer}" for server, answer in verdict.seen.items()]
    lines += [f"    reference {verdict.reference}"]
    lines += [f"    -> {problem}" for problem in verdict.problems]
    return "\n".join(lines)


def summary(topo: Topology, clients: list[Client], asked: Questions, verdicts: list[Verdict]
            ) -> str:
    rules = Counter(rule for v in verdicts for rule in v.rules)
    kinds = Counter("not local" if forwarded(v.name, v.seen["docker"]) else
                    "local" if v.seen["docker"].rdata else "nodata" for v in verdicts)
    bad = sum(1 for v in verdicts if v.problems)
    return (f"seed {topo.seed}: networks {sorted(topo.kinds.values())}, {len(topo.boxes)} "
            f"containers, {len(clients)} clients, {len(asked.names)} names + "
            f"{len(asked.ptrs)} PTR, {len(verdicts)} questions "
            f"({2 * len(verdicts)} scopedns answers compared); docker answers {dict(kinds)}; "
            f"rules applied {dict(rules)}; mismatches {bad}")


# --- The test ---------------------------------------------------------------------------------


def alias_order(extra_args: str) -> str:
    """The --alias-order the lab's scopedns runs with (SCOPEDNS_IT_SERVER_ARGS; last wins)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--alias-order", default="first")
    return str(parser.parse_known_args(shlex.split(extra_args))[0].alias_order)


@pytest.fixture(scope="module")
def main_order(lab: Lab) -> str:
    """Start the lab's scopedns (port 53) and a second one with --alias-order ordered (5353)."""
    if ORACLE_ONLY:
        pytest.skip("the differential test needs scopedns")
    lab.start_server()
    lab.start_extra_server("scopedns-ordered", ORDERED_PORT, "--alias-order", "ordered")
    return alias_order(EXTRA_SERVER_ARGS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every seed of SEEDS directly, and TAKEOVER_SEEDS under takeover (conftest.py WAYS)."""
    cases = [(way, seed) for way in WAYS for seed in (SEEDS if way == DIRECT else TAKEOVER_SEEDS)]
    metafunc.parametrize(("lab", "seed"), [pytest.param(way, seed, id=f"{way}-{seed}")
                                           for way, seed in cases], indirect=["lab"],
                         scope="module")


def test_same_answers_as_docker(lab: Lab, main_order: str, seed: int) -> None:
    """Every client, every name: scopedns answers as 127.0.0.11 does, but for the rules."""
    assert lab.sidecar is not None
    sidecar, topo = lab.sidecar.name, Topology(seed)
    started = time.monotonic()
    try:
        build(lab, topo)
        facts = inspect_all([sidecar, *(box.name for box in topo.boxes)])
        clients = clients_of(topo, facts, sidecar)
        asked = questions_for(topo, facts, sidecar, lab.engine.run_id)
        built = time.monotonic()
        verdicts = [v for client in clients for v in judge_client(lab, client, asked,
                                                                  main_order)]
        judged = time.monotonic()
    finally:
        dismantle(lab, topo)
    print(summary(topo, clients, asked, verdicts), describe(topo, facts), sep="\n")
    print(f"seed {seed}: built in {built - started:.1f} s, asked in {judged - built:.1f} s, "
          f"removed in {time.monotonic() - judged:.1f} s")
    bad = [verdict for verdict in verdicts if verdict.problems]
    counted = lab.takeover.count_problem() if lab.takeover is not None else None
    if counted:
        pytest.fail(f"seed {seed}: {counted}\n{lab.report()}", pytrace=False)
    if bad:
        shown = "\n".join(explain(verdict) for verdict in bad[:20])
        pytest.fail(f"seed {seed}: {len(bad)} of {len(verdicts)} answers differ from Docker's "
                    f"beyond the rules\n{shown}\n{describe(topo, facts)}", pytrace=False)
