# Reading a callgrind output file (valgrind --tool=callgrind): the total of the first event
# (instructions, Ir, by default), and per function its self cost, its inclusive cost and how often
# it was called, summed over every call arc into it. Enough for bench/instructions.py to say what
# a query costs and where the difference between two runs goes. Pure: text in, numbers out.
#
# The format (valgrind's docs, "Callgrind Format Specification"): `fn=(id) name` opens a
# function's block (later `fn=(id)` alone); a cost line is "<position> <cost>..." whose position
# may be absolute, relative (+n, -n) or `*`; `cfn=` and `calls=<count> <target>` announce a call
# whose inclusive cost is the cost line right after it.
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")
_COST_START = frozenset("0123456789+-*")
_RECURSION_LEVEL = re.compile(r"'\d+$")  # `f'2`: callgrind's name for a recursive call of f


@dataclass
class FunctionCost:
    self_cost: int = 0  # instructions in the function's own code
    # instructions of every call into it, callees included (summed over call arcs, so a
    # recursive function counts its inner calls twice)
    inclusive: int = 0
    calls: int = 0


@dataclass
class Profile:
    total: int = 0  # of the first event
    functions: dict[str, FunctionCost] = field(default_factory=dict)  # first event only
    events: dict[str, int] = field(default_factory=dict)  # every event's total

    def event(self, name: str) -> int:
        return self.events.get(name, 0)

    def function(self, name: str) -> FunctionCost:
        return self.functions.get(name, FunctionCost())


class _Names:
    """callgrind's name compression: `(id) name` defines, `(id)` refers back."""

    def __init__(self) -> None:
        self._by_id: dict[str, str] = {}

    def resolve(self, value: str) -> str:
        found = _NAMED.match(value)
        if found is None:
            return _RECURSION_LEVEL.sub("", value)
        ident, name = found.groups()
        if name is not None:
            name = _RECURSION_LEVEL.sub("", name)  # one function, whatever the level
            self._by_id[ident] = name
            return name
        return self._by_id.get(ident, f"({ident})")


def _first_cost(line: str) -> int:
    """The first event's cost on a cost line (0 when the line carries none)."""
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 else 0


def parse(lines: Iterable[str]) -> Profile:
    """The profile of one callgrind output file, read line by line."""
    profile = Profile()
    names = _Names()
    current: FunctionCost | None = None
    callee: FunctionCost | None = None  # set by calls=: the next cost line is inclusive
    pending = FunctionCost()  # the function the last cfn= named
    names_of_events: list[str] = []
    for raw in lines:
        line = raw.rstrip("\n")
        if not line:
            continue
        if line[0] in _COST_START:
            cost = _first_cost(line)
            if callee is not None:
                callee.inclusive += cost
                callee = None
            elif current is not None:
                current.self_cost += cost
            continue
        key, _, value = line.partition("=")
        if key == "fn":
            current = profile.functions.setdefault(names.resolve(value), FunctionCost())
        elif key == "cfn":
            callee = None
            pending = profile.functions.setdefault(names.resolve(value), FunctionCost())
        elif key == "calls":
            pending.calls += int(value.split()[0])
            callee = pending
        elif line.startswith("events:"):
            names_of_events = line.split(":", 1)[1].split()
        elif line.startswith(("summary:", "totals:")):
            counts = [int(count) for count in line.split(":", 1)[1].split()]
            profile.events = dict(zip(names_of_events, counts, strict=False))
            profile.total = max(profile.total, counts[0] if counts else 0)
    if not profile.total:
        profile.total = sum(f.self_cost for f in profile.functions.values())
    return profile


def read(path: str) -> Profile:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return parse(handle)
