# The command line as a user meets it: flags and SCOPEDNS_* environment variables become the
# same Config; defaults; upstreams from resolv.conf without loopback (no loop to ourselves).
from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from resolver.answer import AliasOrder
from resolver.cli import SERVE_FLAGS, build_parser, config_from_args, main
from resolver.config import Config
from resolver.exchange import Upstream


def config(argv: list[str], tmp_path: Path, resolv: str = "") -> Config:
    conf = tmp_path / "resolv.conf"
    conf.write_text(resolv)
    return config_from_args(build_parser().parse_args(["serve", *argv]), str(conf))


def test_defaults(tmp_path: Path) -> None:
    got = config([], tmp_path, "nameserver 127.0.0.53\nnameserver 192.0.2.1\n")
    assert got.listen == (("127.0.0.1", 5353),)
    assert got.upstreams == (Upstream("192.0.2.1"),)  # loopback resolvers could be us
    assert got.ttl == 0 and got.alias_order is AliasOrder.FIRST and got.domain is None
    assert got.host_view_from == (ip_network("127.0.0.0/8"), ip_network("::1/128"))


def test_flags(tmp_path: Path) -> None:
    got = config(["--listen", "0.0.0.0:53", "--listen", "[::1]:5300", "--upstream",
                  "192.0.2.9:5353", "--ttl", "600", "--alias-order", "shuffle",
                  "--domain", "Cluster.Test.", "--host-view-from", "10.0.0.0/8"], tmp_path)
    assert got.listen == (("0.0.0.0", 53), ("::1", 5300))
    assert got.upstreams == (Upstream("192.0.2.9", 5353),)
    assert got.ttl == 600 and got.alias_order is AliasOrder.SHUFFLE
    assert got.domain == "cluster.test" and got.host_view_from == (ip_network("10.0.0.0/8"),)


def test_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOPEDNS_LISTEN", "127.0.0.1:5454,127.0.0.2:5454")
    monkeypatch.setenv("SCOPEDNS_UPSTREAM", "192.0.2.7")
    monkeypatch.setenv("SCOPEDNS_TTL", "30")
    monkeypatch.setenv("SCOPEDNS_ALIAS_ORDER", "ordered")
    monkeypatch.setenv("SCOPEDNS_MAX_FORWARDS", "10")
    got = config([], tmp_path)
    assert got.listen == (("127.0.0.1", 5454), ("127.0.0.2", 5454))
    assert got.upstreams == (Upstream("192.0.2.7"),)
    assert got.ttl == 30 and got.alias_order is AliasOrder.ORDERED and got.max_forwards == 10


def test_flag_beats_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOPEDNS_TTL", "30")
    assert config(["--ttl", "5"], tmp_path).ttl == 5


def test_no_upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config(["--no-upstream"], tmp_path, "nameserver 192.0.2.1\n").upstreams == ()
    monkeypatch.setenv("SCOPEDNS_NO_UPSTREAM", "true")
    assert config([], tmp_path, "nameserver 192.0.2.1\n").upstreams == ()


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """Exit code and stderr lines of `scopedns ARGV`, as a shell sees them."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("argv", [["--upstream", "dns.example.invalid"],
                                  ["--upstream", "127.0.0.1:5353"]])
def test_refused_upstreams(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A name (it would need resolving, perhaps through us) and ourselves (a loop, found once
    the listener is bound) are both refused with one line."""
    code, lines = run_main(["serve", "--listen", "127.0.0.1:5353", *argv,
                            "--docker", "unix:///nonexistent/docker.sock"], capsys)
    assert code == 2 and len(lines) == 1 and "upstream" in lines[0]


# One bad value per flag: (flag, value, words the one-line reason must contain).
BAD_VALUES = [
    ("listen", "h:x", "port"), ("listen", "localhost:53", "not an IP address"),
    ("listen", "127.0.0.1:70000", "port"), ("docker", "docker.sock", "engine URL"),
    ("resync-interval", "-1", "at least 0"), ("resync-interval", "soon", "not a number"),
    ("upstream", "192.0.2.1:0", "port 0"), ("upstream-timeout", "0", "above 0"),
    ("max-forwards", "0", "at least 1"), ("max-forwards", "1.5", "not an integer"),
    ("ttl", "-5", "at least 0"), ("alias-order", "random", "first, ordered, shuffle"),
    ("domain", "a..b", "not a domain name"), ("host-view-from", "10.0.0.0/33", "CIDR"),
    ("rate-limit", "-1", "at least 0"), ("rate-limit-burst", "many", "not a number"),
    ("log-level", "verbose", "debug, info, warning, error"), ("cache-size", "-1", "at least 0"),
    ("attach", "some", "all, labeled"),
    ("takeover-only", "=a", "label selector"),
    ("http", "127.0.0.1:99999", "port"), ("log-format", "xml", "text, json"),
    ("udp-io", "threads", "batch, loop"),
]


@pytest.mark.parametrize(("flag", "value", "reason"), BAD_VALUES,
                         ids=[f"{f}={v}" for f, v, _ in BAD_VALUES])
def test_a_bad_flag_value_is_one_line_naming_the_flag(
        flag: str, value: str, reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_main(["serve", f"--{flag}", value], capsys)
    assert code == 2 and len(lines) == 1
    assert f"--{flag}" in lines[0] and reason in lines[0], lines


@pytest.mark.parametrize(("flag", "value", "reason"), BAD_VALUES,
                         ids=[f"{f}={v}" for f, v, _ in BAD_VALUES])
def test_a_bad_environment_value_is_one_line_naming_variable_and_flag(
        flag: str, value: str, reason: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    variable = "SCOPEDNS_" + flag.replace("-", "_").upper()
    monkeypatch.setenv(variable, value)
    code, lines = run_main(["serve"], capsys)
    assert code == 2 and len(lines) == 1
    assert variable in lines[0] and f"--{flag}" in lines[0] and reason in lines[0], lines


@pytest.mark.parametrize("switch", ["no-upstream", "ignore-health"])
def test_a_bad_switch_in_the_environment(switch: str, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    variable = "SCOPEDNS_" + switch.replace("-", "_").upper()
    monkeypatch.setenv(variable, "perhaps")
    code, lines = run_main(["serve"], capsys)
    assert code == 2 and f"{variable} (--{switch})" in lines[0]


def test_ignore_health(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/health.md: health-aware answers unless --ignore-health."""
    assert config([], tmp_path).ignore_health is False
    assert config(["--ignore-health"], tmp_path).ignore_health is True
    monkeypatch.setenv("SCOPEDNS_IGNORE_HEALTH", "yes")
    assert config([], tmp_path).ignore_health is True


def test_every_flag_has_a_bad_value_case() -> None:
    checked = {flag for flag, _, _ in BAD_VALUES} | {"no-upstream", "snapshot", "takeover",
                                                     "ignore-health", "log-queries"}
    assert checked == {flag.name for flag in SERVE_FLAGS}


def test_resync_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config([], tmp_path).resync_interval == 300.0
    assert config(["--resync-interval", "0"], tmp_path).resync_interval == 0.0
    monkeypatch.setenv("SCOPEDNS_RESYNC_INTERVAL", "60")
    assert config([], tmp_path).resync_interval == 60.0
    with pytest.raises(SystemExit):  # refused by the flag's check (exit 2, one line)
        config(["--resync-interval", "-1"], tmp_path)
