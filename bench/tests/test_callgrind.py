# bench/callgrind.py: totals per event, self cost per function with callgrind's name compression
# and recursion levels folded together, inclusive cost and call counts from call arcs; and
# bench/instructions.py's arithmetic: (I(3N) - I(N)) / 2N, the collector's share per query.
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


def test_instructions_per_query_cancel_start_up_and_count_the_collector() -> None:
    def profile(total: int, gc_cost: int, gc_calls: int) -> callgrind.Profile:
        return callgrind.Profile(total, {"gc_collect_main": callgrind.FunctionCost(
            gc_cost, gc_cost, gc_calls)}, {"Ir": total})

    short = Run(asked=100, warm=10, answered=100, probes=1,
                profile=profile(1_000_000 + 110 * 500, 2_000, 1))
    long = Run(asked=300, warm=10, answered=299, probes=1,
               profile=profile(1_000_000 + 310 * 500, 6_000, 3))
    row = per_query(short, long, top=1)
    assert row["instructions_per_query"] == 500
    assert row["fixed_instructions"] == 1_000_000
    assert row["gc_instructions_per_query"] == 20
    assert row["gc_collections_per_1000_queries"] == 10
    assert row["gc_instructions_per_collection"] == 2_000
    assert row["lost"] == 1


def test_query_file_lines_become_queries() -> None:
    wires = query_wires(["web A", "", "# comment", "1.0.16.172.in-addr.arpa PTR"], edns=True)
    messages = [dns.message.from_wire(wire) for wire in wires]
    assert [(m.question[0].name.to_text(), m.question[0].rdtype) for m in messages] == [
        ("web.", dns.rdatatype.A), ("1.0.16.172.in-addr.arpa.", dns.rdatatype.PTR)]
    assert all(m.edns == 0 for m in messages)
