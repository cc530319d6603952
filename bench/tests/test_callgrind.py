# bench/callgrind.py: totals per event, self cost per function with callgrind's name compression
# and recursion levels folded together, inclusive cost and call counts from call arcs; and
# bench/instructions.py's arithmetic: the 2N part over 2N, the collector's share per query.
from __future__ import annotations

import dns.message
import dns.rdatatype

from bench import callgrind
from bench.instructions import Run, per_query, query_wires

FILE = """\
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir D1mr

fl=(1) gcmodule.c
fn=(1) gc_collect_main
10 500 3
+2 100

fn=(2) main
1 40
cfl=(1)
cfn=(1)
calls=3 10
* 600 3
cfn=(3) visit'2
calls=2 7
+1 50
fn=(3)
7 50

summary: 740 6
totals: 740 6
"""


def test_totals_self_costs_and_call_arcs() -> None:
    profile = callgrind.parse(FILE.splitlines(keepends=True))
    assert profile.total == 740
    assert profile.events == {"Ir": 740, "D1mr": 6}
    gc = profile.function("gc_collect_main")
    assert (gc.self_cost, gc.inclusive, gc.calls) == (600, 600, 3)
    assert profile.function("main").self_cost == 40
    visit = profile.function("visit")  # `visit'2` is visit
    assert (visit.self_cost, visit.inclusive, visit.calls) == (50, 50, 2)
    assert profile.function("absent").calls == 0


def test_instructions_per_query_from_the_parts_and_the_collectors_share() -> None:
    def profile(total: int, gc_cost: int = 0, gc_calls: int = 0) -> callgrind.Profile:
        return callgrind.Profile(total, {
            "gc_collect_main": callgrind.FunctionCost(gc_cost, gc_cost, gc_calls),
            "rare": callgrind.FunctionCost(100, 100, 1)}, {"Ir": total})

    run = Run(asked=100, answered=299, probes=3, parts=(
        profile(9_000_000), profile(100 * 501, 2_000, 1), profile(200 * 500, 4_000, 2),
        profile(1_000)))
    row = per_query(run, top=1)
    assert row["instructions_per_query"] == 500
    assert row["first_part_per_query"] == 501
    assert row["startup_instructions"] == 9_000_000
    assert row["gc_instructions_per_query"] == 20
    assert row["gc_collections_per_1000_queries"] == 10
    assert row["gc_instructions_per_collection"] == 2_000
    assert row["lost"] == 1
    assert row["top_self_per_query"] == [{"function": "gc_collect_main", "instructions": 20.0}]
    assert "rare" not in row["functions_per_query"]  # under one instruction per query


def test_query_file_lines_become_queries() -> None:
    wires = query_wires(["web A", "", "# comment", "1.0.16.172.in-addr.arpa PTR"], edns=True)
    messages = [dns.message.from_wire(wire) for wire in wires]
    assert [(m.question[0].name.to_text(), m.question[0].rdtype) for m in messages] == [
        ("web.", dns.rdatatype.A), ("1.0.16.172.in-addr.arpa.", dns.rdatatype.PTR)]
    assert all(m.edns == 0 for m in messages)
