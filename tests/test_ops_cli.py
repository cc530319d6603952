# The operations flags as a user meets them (docs/operations.md): --http off by default, port
# 9153 when none is given, SCOPEDNS_HTTP / SCOPEDNS_LOG_FORMAT / SCOPEDNS_LOG_QUERIES (bad
# values: tests/test_cli.py's table), and an --http address that cannot be bound stops `serve`
# in one line.
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from resolver.cli import build_parser, config_from_args
from resolver.config import Config
from testkit.ports import free_port

REPO = Path(__file__).resolve().parents[1]


def config(argv: list[str], tmp_path: Path) -> Config:
    conf = tmp_path / "resolv.conf"
    conf.write_text("")
    return config_from_args(build_parser().parse_args(["serve", *argv]), str(conf))


def test_off_by_default(tmp_path: Path) -> None:
    got = config([], tmp_path)
    assert got.http is None and got.log_format == "text" and not got.log_queries


def test_flags_and_default_port(tmp_path: Path) -> None:
    got = config(["--http", "127.0.0.1", "--log-format", "json", "--log-queries"], tmp_path)
    assert got.http == ("127.0.0.1", 9153) and got.log_format == "json" and got.log_queries
    assert config(["--http", "[::1]:9100"], tmp_path).http == ("::1", 9100)


def test_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOPEDNS_HTTP", "0.0.0.0:9153")
    monkeypatch.setenv("SCOPEDNS_LOG_FORMAT", "json")
    monkeypatch.setenv("SCOPEDNS_LOG_QUERIES", "true")
    got = config([], tmp_path)
    assert got.http == ("0.0.0.0", 9153) and got.log_format == "json" and got.log_queries


def test_http_address_in_use_stops_serve_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "resolver", "serve", "--listen", f"127.0.0.1:{free_port()}",
             "--http", f"127.0.0.1:{port}", "--no-upstream", "--docker", "unix:///nonexistent"],
            capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"scopedns: error: cannot listen on --http 127.0.0.1:{port}")
