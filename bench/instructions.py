# Instructions per query, a figure a busy machine cannot blur: a server command runs under
# valgrind's callgrind (Python's hash seed fixed, PYTHONHASHSEED=0) and is asked a fixed
# sequence of UDP queries one at a time (one in flight, and a short pause after each reply, so
# every query gets a wake-up of its own and every cache fill is the same). callgrind_control
# cuts the profile into parts: start-up, loading and the warm-up; N queries; 2N queries; the
# shutdown. Instructions per query = the 2N part / 2N (the N part / N must agree). The parts
# also say where it goes: instructions per query in each C function (self cost), and the
# garbage collector's share (gc_collect_main: calls and inclusive instructions). Method and
# figures: docs/performance.md.
#
#   python -m bench.instructions --server 'CMD ... {port} ...' [--server ...] [--cwd DIR ...]
#       --queries FILE [--source 127.0.0.1] [--edns] [-n 2000] [--top 12] [--json]
#   python -m bench.instructions --server ... --manifest SNAP.manifest.json [--profile host]
#
# `{port}` in a command is replaced by a free loopback port; each --server is one row, compared
# with the first (A/B of two trees: the same command with --cwd of each tree). The query file is
# dnsperf's format, "name TYPE" per line; --manifest takes a bench.synth manifest's profile
# instead (its names, from its first client). Readiness: the UDP port is bound, then the first
# query is asked until the reply is not SERVFAIL (scopedns says SERVFAIL until synced); those
# probes fall in the start-up part, whatever their number.
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype

from bench import callgrind
from testkit.ports import free_port

GC_FUNCTION = "gc_collect_main"  # CPython's one collection routine (Modules/gcmodule.c)
READY_SECONDS = 900.0  # a 10,000-container snapshot loads in ~2 minutes under callgrind
REPLY_SECONDS = 60.0  # one reply, under callgrind
STOP_SECONDS = 300.0  # SIGTERM to exit, callgrind's dump included
DUMP_SECONDS = 300.0  # callgrind_control --dump, through vgdb
PROBE_EVERY = 0.5
# A pause after each reply, so that the server is back in its poll before the next query
# arrives: every query then takes a wake-up of its own (without it, whether a query is read in
# the same wake-up as the previous one depends on timing: ~5 % noise).
GAP_SECONDS = 0.003


@dataclass(frozen=True)
class Run:
    """One server process under callgrind, its profile cut into parts: start-up (loading, the
    readiness probes, the warm-up), N queries, 2N queries, shutdown."""

    asked: int  # N
    answered: int  # of the 3N
    probes: int
    parts: tuple[callgrind.Profile, ...]

    @property
    def queries(self) -> tuple[callgrind.Profile, callgrind.Profile]:
        return self.parts[1], self.parts[2]


def query_wires(lines: list[str], edns: bool) -> list[bytes]:
    """One query per "name TYPE" line (ID 0; the sender numbers them)."""
    wires = []
    for line in lines:
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        qtype = dns.rdatatype.from_text(parts[1] if len(parts) > 1 else "A")
        message = dns.message.make_query(parts[0], qtype, use_edns=0 if edns else False)
        message.id = 0
        wires.append(message.to_wire())
    if not wires:
        raise ValueError("no queries in the query file")
    return wires


def udp_bound(port: int) -> bool:
    """Whether some UDP socket is bound to `port` (/proc/net/udp, udp6)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(row.split()[1].endswith(wanted) for row in rows if len(row.split()) > 1):
            return True
    return False


def exchange(sock: socket.socket, wire: bytes, ident: int, timeout: float) -> int | None:
    """Send one query with ID `ident`; the reply's rcode, None when none came in time."""
    sock.settimeout(timeout)
    sock.send(ident.to_bytes(2, "big") + wire[2:])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = sock.recv(65535)
        except (TimeoutError, ConnectionRefusedError):
            return None
        if len(reply) >= 12 and int.from_bytes(reply[:2], "big") == ident:
            return reply[3] & 0x0F
    return None


def wait_ready(sock: socket.socket, port: int, wire: bytes,
               process: subprocess.Popen[bytes]) -> int:
    """Probes sent until the server answered `wire` with anything but SERVFAIL."""
    began, probes = time.monotonic(), 0
    while time.monotonic() - began < READY_SECONDS:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        if not udp_bound(port):
            time.sleep(PROBE_EVERY)
            continue
        probes += 1
        rcode = exchange(sock, wire, probes, REPLY_SECONDS)
        if rcode is not None and rcode != dns.rcode.SERVFAIL:
            return probes
        time.sleep(PROBE_EVERY)
    raise RuntimeError(f"no answer on port {port} in {READY_SECONDS:.0f} s")


def ask_serially(sock: socket.socket, wires: list[bytes], start: int, count: int,
                 gap: float) -> int:
    """Queries start..start+count-1 of `wires` cycled, one in flight and `gap` seconds after
    the previous reply; how many were answered."""
    answered = 0
    for i in range(start, start + count):
        answered += exchange(sock, wires[i % len(wires)], i % 65536, REPLY_SECONDS) is not None
        time.sleep(gap)
    return answered


@dataclass(frozen=True)
class Plan:
    """What each run asks: the queries (cycled), the first `warm` of them as a warm-up (by
    default one pass), then N or 3N more, from `source`."""

    wires: list[bytes]
    source: str
    warm: int
    cache_sim: bool = False
    gap: float = GAP_SECONDS


def dump(pid: int) -> None:
    """End the profile's current part (callgrind_control --dump): the next starts at zero."""
    done = subprocess.run(["callgrind_control", "--dump", str(pid)], capture_output=True,
                          text=True, timeout=DUMP_SECONDS, check=False)
    if done.returncode != 0 or "OK" not in done.stdout:
        raise RuntimeError(f"callgrind_control --dump {pid} failed: "
                           f"{(done.stdout + done.stderr).strip()[-200:]}")


def run_once(command: str, cwd: Path, plan: Plan, asked: int, out: Path,
             env: dict[str, str]) -> Run:
    """Start the server under callgrind, warm it up, ask N then 2N queries with a dump after
    each phase, stop it."""
    port = free_port()
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            f"--cache-sim={'yes' if plan.cache_sim else 'no'}",
            *[part.replace("{port}", str(port)) for part in shlex.split(command)]]
    with out.with_suffix(".log").open("wb") as log:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((plan.source, 0))
            sock.connect(("127.0.0.1", port))
            probes = wait_ready(sock, port, plan.wires[0], process)
            ask_serially(sock, plan.wires, 0, plan.warm, plan.gap)
            dump(process.pid)
            answered = ask_serially(sock, plan.wires, plan.warm, asked, plan.gap)
            dump(process.pid)
            answered += ask_serially(sock, plan.wires, plan.warm + asked, 2 * asked, plan.gap)
            dump(process.pid)
        process.send_signal(signal.SIGTERM)
        process.wait(STOP_SECONDS)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    files = [Path(f"{out}.{part}") for part in (1, 2, 3)] + [out]
    missing = [str(path) for path in files if not path.exists()]
    if missing:
        raise RuntimeError(f"callgrind wrote no {', '.join(missing)} "
                           f"(see {out.with_suffix('.log')})")
    return Run(asked, answered, probes, tuple(callgrind.read(str(path)) for path in files))


def per_query(run: Run, top: int) -> dict[str, Any]:
    """What one query costs: the 2N part over 2N, checked against the N part over N."""
    first, second = run.queries
    count = 2 * run.asked
    gc = second.function(GC_FUNCTION)
    functions = {name: cost.self_cost / count for name, cost in second.functions.items()
                 if cost.self_cost >= count}
    ranked = sorted(functions.items(), key=lambda item: -item[1])[:top]
    return {
        "instructions_per_query": second.total / count,
        "first_part_per_query": first.total / run.asked,  # the check: should agree
        "events_per_query": {name: value / count for name, value in second.events.items()},
        "startup_instructions": run.parts[0].total,  # loading, probes and warm-up included
        "shutdown_instructions": run.parts[3].total,
        "gc_instructions_per_query": gc.inclusive / count,
        "gc_collections_per_1000_queries": gc.calls * 1000 / count,
        "gc_instructions_per_collection": gc.inclusive / gc.calls if gc.calls else None,
        "lost": 3 * run.asked - run.answered,
        "probes": run.probes,
        "top_self_per_query": [{"function": name, "instructions": round(value, 1)}
                               for name, value in ranked],
        "functions_per_query": functions,  # at least one instruction per query
    }


def measure(command: str, cwd: Path, plan: Plan, count: int, workdir: Path, label: str,
            env: dict[str, str], top: int) -> dict[str, Any]:
    out = workdir / f"callgrind-{label}.out"
    print(f"{label}: start-up, warm-up, {count} + {2 * count} queries under callgrind ...",
          file=sys.stderr, flush=True)
    began = time.monotonic()
    run = run_once(command, cwd, plan, count, out, env)
    print(f"{label}: done in {time.monotonic() - began:.0f} s, {run.probes} probes",
          file=sys.stderr, flush=True)
    return {"label": label, "command": command, "cwd": str(cwd), "queries": count,
            **per_query(run, top)}


def manifest_queries(path: Path, profile: str) -> tuple[list[str], str]:
    """A bench.synth manifest's profile as query lines, and its first client address."""
    found = json.loads(path.read_text())["profiles"][profile]
    return [f"{name} {found['qtype']}" for name in found["names"]], found["clients"][0]


def report(rows: list[dict[str, Any]], top: int) -> None:
    base = rows[0]
    for row in rows:
        ratio = row["instructions_per_query"] / base["instructions_per_query"]
        per_collection = row["gc_instructions_per_collection"]
        print(f"{row['label']}: {row['instructions_per_query']:,.0f} instructions/query "
              f"(x{ratio:.3f} of {base['label']}; N part {row['first_part_per_query']:,.0f}); "
              f"garbage collector {row['gc_instructions_per_query']:,.0f}/query, "
              f"{row['gc_collections_per_1000_queries']:.2f} collections per 1000 queries"
              + (f" of {per_collection:,.0f} each" if per_collection else "")
              + f"; start-up {row['startup_instructions']:,.0f}; lost {row['lost']}")
        misses = {k: v for k, v in row["events_per_query"].items() if k != "Ir"}
        if misses:
            print("    per query: " + ", ".join(f"{k} {v:,.1f}" for k, v in misses.items()))
        listed = row["top_self_per_query"] if row is base else changes(base, row, top)
        print("    " + ("most instructions per query:" if row is base
                        else f"largest changes from {base['label']}:"))
        for item in listed:
            print(f"    {item['instructions']:>+12,.1f}  {item['function']}" if row is not base
                  else f"    {item['instructions']:>12,.1f}  {item['function']}")


def changes(base: dict[str, Any], row: dict[str, Any], top: int) -> list[dict[str, Any]]:
    """The functions whose instructions per query differ most from the base row's."""
    old, new = base["functions_per_query"], row["functions_per_query"]
    deltas = {name: new.get(name, 0.0) - old.get(name, 0.0) for name in old.keys() | new.keys()}
    ranked = sorted(deltas.items(), key=lambda item: -abs(item[1]))[:top]
    return [{"function": name, "instructions": round(value, 1)} for name, value in ranked]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions",
                                     description="instructions per query under callgrind")
    add = parser.add_argument
    add("--server", action="append", required=True,
        help="server command line with {port}; repeat to compare (the first is the base)")
    add("--cwd", action="append", type=Path, default=[],
        help="working directory per --server (one for all, or one each; default: here)")
    add("--label", action="append", default=[], help="a name per --server")
    add("--queries", type=Path, help='query file, "name TYPE" per line (dnsperf format)')
    add("--manifest", type=Path, help="a bench.synth manifest instead of --queries")
    add("--profile", default="host", help="the manifest's profile (default host)")
    add("--source", help="the address queries come from (default 127.0.0.1, or the "
        "manifest profile's first client)")
    add("--edns", action="store_true", help="queries carry EDNS (dnsperf -e)")
    add("--warm", type=int, help="warm-up queries before the N (default: the whole file once;"
        " 0 and a file longer than --warm + 3N: every measured query is new)")
    add("--gap", type=float, default=GAP_SECONDS,
        help=f"seconds between a reply and the next query (default {GAP_SECONDS})")
    add("-n", "--count", type=int, default=2000, help="N: parts of N and 2N queries")
    add("--cache-sim", action="store_true",
        help="callgrind's cache simulation: misses per query too (D1mr, DLmr, ...)")
    add("--top", type=int, default=12, help="functions listed by self cost per query")
    add("--hashseed", default="0", help="PYTHONHASHSEED of the server (default 0)")
    add("--keep", type=Path, help="keep callgrind files and logs in this directory")
    add("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    if (args.queries is None) == (args.manifest is None):
        parser.error("give one of --queries and --manifest")
    for flag in ("cwd", "label"):
        if len(getattr(args, flag)) not in (0, 1, len(args.server)) or (
                flag == "label" and len(args.label) == 1 < len(args.server)):
            parser.error(f"--{flag}: none, one, or one per --server")
    if args.count < 1:
        parser.error("-n must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.manifest is not None:
        lines, client = manifest_queries(args.manifest, args.profile)
    else:
        lines, client = args.queries.read_text().splitlines(), "127.0.0.1"
    wires = query_wires(lines, args.edns)
    plan = Plan(wires, args.source or client, len(wires) if args.warm is None else args.warm,
                args.cache_sim, args.gap)
    env = {**os.environ, "PYTHONHASHSEED": args.hashseed}
    cwds = args.cwd * len(args.server) if len(args.cwd) == 1 else args.cwd
    labels = args.label or [f"server{index + 1}" for index in range(len(args.server))]
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="scopedns-instructions-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for index, command in enumerate(args.server):
            cwd = cwds[index] if cwds else Path.cwd()
            rows.append(measure(command, cwd, plan, args.count, workdir, labels[index], env,
                                args.top))
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as error:
        print(f"instructions: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep is None:
            for leftover in workdir.iterdir():
                leftover.unlink()
            workdir.rmdir()
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        report(rows, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
