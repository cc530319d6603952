# Pure parts of takeover (docs/takeover.md), without Docker: the table text, reading Docker's
# DNAT ports from nft and iptables-save listings, the firewall flavour, and which containers
# are taken over.
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from resolver.divert import (
    PRIORITY,
    TABLE,
    DockerPorts,
    divert_ruleset,
    docker_ports,
    firewall_flavour,
    has_our_table,
    missing_diversion_reason,
    our_diversion_ports,
)
from watchers.takeover_plan import Skip, Target, plan

NFT_DOCKER = """table ip nat {
\tchain DOCKER_OUTPUT {
\t\tip daddr 127.0.0.11 tcp dport 53 counter packets 0 bytes 0 dnat to 127.0.0.11:46057
\t\tip daddr 127.0.0.11 udp dport 53 counter packets 1 bytes 57 dnat to 127.0.0.11:34316
\t}
\tchain OUTPUT {
\t\ttype nat hook output priority -100; policy accept;
\t\tip daddr 127.0.0.11 counter packets 0 bytes 0 jump DOCKER_OUTPUT
\t}
\tchain DOCKER_POSTROUTING {
\t\tip saddr 127.0.0.11 tcp sport 46057 counter packets 0 bytes 0 snat to :53
\t\tip saddr 127.0.0.11 udp sport 34316 counter packets 0 bytes 0 snat to :53
\t}
}
"""

OURS = """table ip scopedns_takeover { # progname python
\tflags owner

\tchain output {
\t\ttype nat hook output priority mangle; policy accept;
\t\tip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:40001
\t\tip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:40002
\t}
}
"""

# What libnftables printed for Docker's rules in a fresh container after an engine restart, when
# several namespace threads listed rulesets at once (issue 10): the DNAT target that
# iptables-nft stores as an x_tables target (`target name DNAT rev 2`) is printed through
# libxtables, which is process-global and not thread-safe, and came out untranslated. The
# SNAT rules' `sport` matches are native nftables and still name Docker's ports.
NFT_DOCKER_XT = """table ip nat {
\tchain DOCKER_OUTPUT {
\t\tip daddr 127.0.0.11 tcp dport 53 counter packets 0 bytes 0 xt target DNAT
\t\tip daddr 127.0.0.11 udp dport 53 counter packets 0 bytes 0 xt target DNAT
\t}

\tchain OUTPUT {
\t\ttype nat hook output priority -100; policy accept;
\t\tip daddr 127.0.0.11 counter packets 0 bytes 0 jump DOCKER_OUTPUT
\t}

\tchain DOCKER_POSTROUTING {
\t\tip saddr 127.0.0.11 tcp sport 44227 counter packets 0 bytes 0 snat to :53
\t\tip saddr 127.0.0.11 udp sport 40855 counter packets 0 bytes 0 snat to :53
\t}

\tchain POSTROUTING {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip daddr 127.0.0.11 counter packets 1 bytes 79 jump DOCKER_POSTROUTING
\t}
}
"""

LEGACY = """*nat
:OUTPUT ACCEPT [0:0]
:DOCKER_OUTPUT - [0:0]
-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT
-A DOCKER_OUTPUT -d 127.0.0.11/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.11:41111
-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:42222
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p udp -m udp --sport 42222 -j SNAT --to-source :53
COMMIT
"""


def test_the_table_diverts_both_transports_ahead_of_docker_and_dies_with_us() -> None:
    text = divert_ruleset(40001, 40002)
    assert text.startswith(f"table ip {TABLE} {{")
    assert "flags owner" in text
    assert PRIORITY < -100  # Docker's nat OUTPUT chain is at dstnat (-100)
    assert "ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:40001" in text
    assert "ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:40002" in text
    assert ":53\n" not in text.replace("dport 53", "")  # never diverts to port 53


def test_docker_ports_from_iptables_nft_listing_ignore_our_own_table() -> None:
    assert docker_ports(NFT_DOCKER) == DockerPorts(udp=34316, tcp=46057)
    assert docker_ports(OURS + NFT_DOCKER) == DockerPorts(udp=34316, tcp=46057)
    assert docker_ports(NFT_DOCKER + OURS) == DockerPorts(udp=34316, tcp=46057)


def test_docker_ports_from_legacy_and_nftables_backend_text() -> None:
    assert docker_ports(LEGACY) == DockerPorts(udp=42222, tcp=41111)
    backend = ("ip daddr 127.0.0.11 udp dport 53 dnat ip to 127.0.0.11:5001\n"
               "ip daddr 127.0.0.11 tcp dport 53 dnat ip to 127.0.0.11:5002\n")
    assert docker_ports(backend) == DockerPorts(udp=5001, tcp=5002)


def test_no_docker_diversion_means_none() -> None:
    assert docker_ports("") is None
    assert docker_ports(OURS) is None  # only ours: Docker has none here
    only_udp = "ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:5001\n"
    assert docker_ports(only_udp) is None
    assert docker_ports("ip daddr 127.0.0.11 udp dport 5353 dnat to 127.0.0.11:5001\n"
                        "ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:5002\n") is None


def test_docker_ports_when_nft_prints_the_dnat_target_untranslated() -> None:
    """Issue 10: every take failed with "no 127.0.0.11 diversion" while `nft` showed the rules."""
    assert docker_ports(NFT_DOCKER_XT) == DockerPorts(udp=40855, tcp=44227)
    assert docker_ports(OURS + NFT_DOCKER_XT) == DockerPorts(udp=40855, tcp=44227)
    both_raw = NFT_DOCKER_XT.replace("snat to :53", "xt target SNAT")  # newer nft quotes it
    assert docker_ports(both_raw.replace("target DNAT", 'target "DNAT"')) == \
        DockerPorts(udp=40855, tcp=44227)
    blank = NFT_DOCKER_XT.replace("xt target DNAT", "").replace("snat to :53", "")
    assert docker_ports(blank) == DockerPorts(udp=40855, tcp=44227)  # printed as nothing


def test_an_untranslated_target_without_a_port_anywhere_is_named_not_guessed() -> None:
    no_snat = NFT_DOCKER_XT.split("\tchain DOCKER_POSTROUTING")[0]
    assert docker_ports(no_snat) is None
    assert "xt target DNAT" in missing_diversion_reason(no_snat)
    other = "table ip filter {\n\tchain INPUT {\n\t}\n}\n"
    assert "no 127.0.0.11 diversion" in missing_diversion_reason(other + OURS)
    assert "no nftables rules" in missing_diversion_reason("")
    assert "no nftables rules" in missing_diversion_reason(OURS)  # ours is not Docker's
    only_udp = "ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:5001\n"
    assert "tcp" in missing_diversion_reason(only_udp)


def test_our_table_is_found_by_name_and_ports() -> None:
    assert has_our_table("table ip nat\ntable ip scopedns_takeover\n")
    assert not has_our_table("table ip nat\ntable ip6 scopedns_takeover\n")
    assert our_diversion_ports(NFT_DOCKER + OURS) == (40001, 40002)
    assert our_diversion_ports(NFT_DOCKER) is None


def test_firewall_flavour() -> None:
    assert firewall_flavour("iptables v1.8.9 (nf_tables)") == "nft"
    assert firewall_flavour("iptables v1.8.7 (legacy)") == "legacy"
    assert firewall_flavour("") == "unknown"


def inspect(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "Id": "c1" * 32, "Name": "/web",
        "State": {"Running": True},
        "Config": {"Labels": {}},
        "HostConfig": {"NetworkMode": "appnet"},
        "NetworkSettings": {"SandboxKey": "/var/run/docker/netns/abc",
                            "Networks": {"appnet": {"IPAddress": "172.20.0.5"}}},
    }
    data.update(overrides)
    return data


def test_a_running_container_on_a_user_defined_network_is_taken_over_as_itself() -> None:
    assert plan(inspect()) == Target("c1" * 32, "web", "/var/run/docker/netns/abc", "172.20.0.5")


def test_bridge_and_user_defined_uses_the_user_defined_address() -> None:
    networks = {"bridge": {"IPAddress": "172.17.0.2"}, "zeta": {"IPAddress": "10.9.0.2"}}
    got = plan(inspect(NetworkSettings={"SandboxKey": "/k", "Networks": networks}))
    assert isinstance(got, Target) and got.client == "10.9.0.2"


def test_ipv6_only_endpoint_is_the_identity() -> None:
    networks = {"v6": {"IPAddress": "", "GlobalIPv6Address": "fd00::5"}}
    got = plan(inspect(NetworkSettings={"SandboxKey": "/k", "Networks": networks}))
    assert isinstance(got, Target) and got.client == "fd00::5"


def test_containers_left_alone_and_why() -> None:
    cases = {
        "not running": inspect(State={"Running": False}),
        "label": inspect(Config={"Labels": {"scopedns.takeover": "false"}}),
        "host network": inspect(HostConfig={"NetworkMode": "host"}),
        "network none": inspect(HostConfig={"NetworkMode": "none"}),
        "another container": inspect(HostConfig={"NetworkMode": "container:abc"}),
        "no user-defined": inspect(NetworkSettings={
            "SandboxKey": "/k", "Networks": {"bridge": {"IPAddress": "172.17.0.2"}}}),
        "SandboxKey": inspect(NetworkSettings={
            "SandboxKey": "", "Networks": {"appnet": {"IPAddress": "172.20.0.5"}}}),
    }
    for why, data in cases.items():
        got = plan(data)
        assert isinstance(got, Skip) and why in got.reason, (why, got)


def test_takeover_only_selects_by_label() -> None:
    labelled = inspect(Config={"Labels": {"team": "a"}})
    assert isinstance(plan(labelled, "team=a"), Target)
    assert isinstance(plan(labelled, "team"), Target)
    assert isinstance(plan(labelled, "team=b"), Skip)
    assert isinstance(plan(inspect(), "team"), Skip)


def test_takeover_flags_and_the_release_command(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from resolver.cli import build_parser, config_from_args

    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.1\n")
    args = build_parser().parse_args(["serve", "--takeover", "--takeover-only", "team=a"])
    got = config_from_args(args, str(conf))
    assert got.takeover and got.takeover_only == "team=a" and not got.no_upstream
    off = config_from_args(build_parser().parse_args(["serve", "--no-upstream"]), str(conf))
    assert not off.takeover and off.no_upstream and off.upstreams == ()
    monkeypatch.setenv("SCOPEDNS_TAKEOVER", "true")
    assert config_from_args(build_parser().parse_args(["serve"]), str(conf)).takeover
    release = build_parser().parse_args(["release", "/run/netns/x"])
    assert release.command == "release" and release.namespaces == ["/run/netns/x"]


def test_the_early_path_reads_the_address_from_the_networks_inspect() -> None:
    from watchers.takeover_plan import endpoint_address, labels_allow

    network = {"Name": "appnet", "Containers": {
        "c1": {"Name": "web", "IPv4Address": "172.20.0.5/16", "IPv6Address": ""},
        "c2": {"Name": "v6", "IPv4Address": "", "IPv6Address": "fd00::7/64"}}}
    assert endpoint_address(network, "c1") == "172.20.0.5"
    assert endpoint_address(network, "c2") == "fd00::7"
    assert endpoint_address(network, "c3") == ""
    assert endpoint_address({**network, "Name": "bridge"}, "c1") == ""
    assert labels_allow({"name": "web"}, None)
    assert not labels_allow({"scopedns.takeover": "false"}, None)
    assert labels_allow({"team": "a"}, "team=a") and not labels_allow({}, "team=a")
