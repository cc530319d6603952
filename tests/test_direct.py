"""`scopedns resolv-conf`: the file a container bind-mounts to ask scopedns directly."""

from __future__ import annotations

import pytest

from resolver.cli import main
from resolver.direct import render_resolv_conf


def test_nameservers_search_and_dockers_ndots() -> None:
    text = render_resolv_conf(["10.9.0.53", "fd00::53"], ["dpl.test."])
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["nameserver 10.9.0.53", "nameserver fd00::53", "search dpl.test",
                     "options ndots:0"]


@pytest.mark.parametrize(("argv", "flag"), [
    ([], "--nameserver"),
    (["--nameserver", "scopedns"], "--nameserver"),
    (["--nameserver", "10.9.0.53", "--ndots", "16"], "--ndots"),
])
def test_bad_values_name_the_flag(argv: list[str], flag: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resolv-conf", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("scopedns: error: " + flag)
