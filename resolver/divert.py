# The takeover diversion as text (docs/takeover.md), pure: the nftables table scopedns puts in a
# container's namespace, reading the ports Docker's own DNAT points 127.0.0.11:53 at (from
# `nft list ruleset` or `iptables-save -t nat` text), the firewall flavour of the host's
# iptables.
#
# How it wins: Docker's rules are nat chains at priority dstnat (-100) in table `ip nat`
# (iptables-nft) or in x_tables (iptables-legacy); the kernel runs every nat chain of a hook in
# priority order and the first one that sets a NAT binding decides. Our chain sits at -150, so
# our DNAT to 127.0.0.11:<our port> is set first and Docker's never applies; Docker's rules are
# left exactly as they are, and rewriting them cannot push ours behind.
from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_DNS = "127.0.0.11"
TABLE = "scopedns_takeover"
FAMILY = "ip"
PRIORITY = -150
PROGRAM = "scopedns"


@dataclass(frozen=True, slots=True)
class DockerPorts:
    """Where Docker's own rules send 127.0.0.11:53 in one namespace."""

    udp: int
    tcp: int


def divert_ruleset(udp_port: int, tcp_port: int) -> str:
    """The table that diverts 127.0.0.11:53 to our listeners. `owner`: the kernel deletes it
    when the netlink socket that created it closes (our exit, or our crash)."""
    return (
        f"table {FAMILY} {TABLE} {{\n"
        f"  flags owner\n"
        f"  chain output {{\n"
        f"    type nat hook output priority {PRIORITY}; policy accept;\n"
        f"    ip daddr {DOCKER_DNS} udp dport 53 dnat to {DOCKER_DNS}:{udp_port}\n"
        f"    ip daddr {DOCKER_DNS} tcp dport 53 dnat to {DOCKER_DNS}:{tcp_port}\n"
        f"  }}\n"
        f"}}\n"
    )


DELETE_TABLE = f"delete table {FAMILY} {TABLE}\n"
LIST_TABLES = "list tables\n"
LIST_NAT = "list ruleset\n"


def has_our_table(list_tables_output: str) -> bool:
    return any(line.split()[:3] == ["table", FAMILY, TABLE]
               for line in list_tables_output.splitlines() if line.strip())


def our_diversion_ports(ruleset: str) -> tuple[int, int] | None:
    """(udp, tcp) of our table in a `list ruleset` text, or None when it is not there."""
    block = _table_block(ruleset, FAMILY, TABLE)
    if block is None:
        return None
    ports = _nft_dnat_ports(block)
    return (ports["udp"], ports["tcp"]) if len(ports) == 2 else None


# nft: `ip daddr 127.0.0.11 udp dport 53 counter packets 0 bytes 0 dnat to 127.0.0.11:34316`
# (Docker 28's nftables backend writes `dnat ip to`).
_NFT_DNAT = re.compile(
    r"ip daddr 127\.0\.0\.11\b.*?\b(udp|tcp) dport 53\b.*?\bdnat (?:ip )?to 127\.0\.0\.11:(\d+)")
# iptables-nft stores DNAT and SNAT as x_tables targets, which nft prints through libxtables;
# when that cannot translate one, it prints `xt target DNAT` (newer nft: `xt target "DNAT"`),
# or nothing after the counter. The match before it is native nftables and still says which
# rule it is: Docker's DNAT of 127.0.0.11:53, whose port is then read from Docker's SNAT back
# from its resolver, `ip saddr 127.0.0.11 udp sport 34316 counter ... snat to :53`.
_NFT_DNAT_RULE = re.compile(r"ip daddr 127\.0\.0\.11\b.*?\b(udp|tcp) dport 53\b")
_NFT_SNAT = re.compile(r"ip saddr 127\.0\.0\.11\b.*?\b(udp|tcp) sport (\d+)\b"
                       r"(?:.*?\bsnat (?:ip )?to :53\b|.*?\bxt target \"?SNAT\b"
                       r"|(?: counter packets \d+ bytes \d+)?\s*$)")
# iptables-save: `-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT
# --to-destination 127.0.0.11:34316`
_XT_DNAT = re.compile(
    r"-d 127\.0\.0\.11(?:/32)?\b.*?-p (udp|tcp)\b.*?--dport 53\b.*?-j DNAT "
    r"--to-destination 127\.0\.0\.11:(\d+)")


def docker_ports(ruleset: str) -> DockerPorts | None:
    """Docker's DNAT targets for 127.0.0.11:53, from `nft list ruleset` (iptables-nft, or the
    nftables backend) or `iptables-save -t nat` (iptables-legacy) text; our own table is
    ignored. A DNAT printed untranslated takes its port from Docker's SNAT rule. None when
    Docker has no DNS diversion there (default bridge, host, none): missing_diversion_reason()
    says which part is missing."""
    docker = _without_table(ruleset, FAMILY, TABLE)
    ports = _nft_dnat_ports(docker)
    for line in ruleset.splitlines():
        match = _XT_DNAT.search(line)
        if match:
            ports.setdefault(match.group(1), int(match.group(2)))
    for proto, port in _untranslated_dnat_ports(docker).items():
        ports.setdefault(proto, port)
    if "udp" not in ports or "tcp" not in ports:
        return None
    return DockerPorts(udp=ports["udp"], tcp=ports["tcp"])


def missing_diversion_reason(ruleset: str) -> str:
    """Why docker_ports() found nothing in `ruleset`, in one line (the listing itself is for
    a debug log)."""
    docker = _without_table(ruleset, FAMILY, TABLE)
    rules = {m.group(1) for line in docker.splitlines() if (m := _NFT_DNAT_RULE.search(line))}
    found = _nft_dnat_ports(docker)
    if rules - set(found):
        return ("Docker's DNAT of 127.0.0.11:53 is there but nft printed its target "
                "untranslated (`xt target DNAT`: libxtables could not translate it) and no "
                "SNAT rule of Docker's names the port")
    if found:
        missing = " and ".join(sorted({"udp", "tcp"} - set(found)))
        return f"Docker diverts 127.0.0.11:53 for {', '.join(sorted(found))} but not {missing}"
    if not docker.strip():
        return ("the namespace has no nftables rules (Docker's 127.0.0.11 rules not in place "
                "yet)")
    return "Docker has no 127.0.0.11 diversion in its namespace"


def _nft_dnat_ports(text: str) -> dict[str, int]:
    ports: dict[str, int] = {}
    for line in text.splitlines():
        match = _NFT_DNAT.search(line)
        if match and 0 < int(match.group(2)) < 65536:
            ports.setdefault(match.group(1), int(match.group(2)))
    return ports


def _untranslated_dnat_ports(text: str) -> dict[str, int]:
    """For each Docker DNAT rule of 127.0.0.11:53 whose target did not print, the port of
    Docker's SNAT rule for the same transport."""
    untranslated = set()
    for line in text.splitlines():
        rule = _NFT_DNAT_RULE.search(line)
        if rule and not _NFT_DNAT.search(line):
            untranslated.add(rule.group(1))
    ports: dict[str, int] = {}
    for line in text.splitlines():
        match = _NFT_SNAT.search(line)
        if match and match.group(1) in untranslated and 0 < int(match.group(2)) < 65536:
            ports.setdefault(match.group(1), int(match.group(2)))
    return ports


def _table_span(ruleset: str, family: str, name: str) -> tuple[int, int] | None:
    """Line range [start, end) of `table family name { ... }` in nft's listing."""
    lines = ruleset.splitlines()
    for start, line in enumerate(lines):
        if line.split()[:3] == ["table", family, name]:
            depth = 0
            for end in range(start, len(lines)):
                depth += lines[end].count("{") - lines[end].count("}")
                if depth <= 0:
                    return start, end + 1
            return start, len(lines)
    return None


def _table_block(ruleset: str, family: str, name: str) -> str | None:
    span = _table_span(ruleset, family, name)
    return None if span is None else "\n".join(ruleset.splitlines()[span[0]:span[1]])


def _without_table(ruleset: str, family: str, name: str) -> str:
    span = _table_span(ruleset, family, name)
    if span is None:
        return ruleset
    lines = ruleset.splitlines()
    return "\n".join(lines[:span[0]] + lines[span[1]:])


def firewall_flavour(iptables_version: str) -> str:
    """`iptables --version` output -> "nft", "legacy" or "unknown"."""
    if "nf_tables" in iptables_version:
        return "nft"
    if "legacy" in iptables_version:
        return "legacy"
    return "unknown"
