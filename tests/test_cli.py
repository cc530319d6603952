# The command line as a user meets it: flags and SCOPEDNS_* environment variables become the
# same Config; defaults; upstreams from resolv.conf without loopback (no loop to ourselves).
from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from resolver.cli import build_parser, config_from_args
from resolver.config import AliasOrder, Config, Upstream


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


@pytest.mark.parametrize("argv", [["--upstream", "dns.example.invalid"],
                                  ["--upstream", "127.0.0.1:5353"]])
def test_refused_upstreams(argv: list[str], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        config(argv, tmp_path)


def test_resync_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config([], tmp_path).resync_interval == 300.0
    assert config(["--resync-interval", "0"], tmp_path).resync_interval == 0.0
    monkeypatch.setenv("SCOPEDNS_RESYNC_INTERVAL", "60")
    assert config([], tmp_path).resync_interval == 60.0
    with pytest.raises(ValueError):
        config(["--resync-interval", "-1"], tmp_path)
