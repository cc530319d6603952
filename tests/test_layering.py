# The layering of docs/design.md, checked: the sans-IO core imports no event loop, socket or
# engine client (directly, or through anything it imports), config.py imports nothing of the
# package, and the pure Docker translation stays free of aiohttp.
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ["model", "table", "views", "answer", "wire", "slowpath", "framing", "handler",
        "ratelimit", "config", "cache", "health", "upstream_reply"]
IO_MODULES = {"asyncio", "socket", "aiodocker", "aiohttp", "uvloop", "selectors", "watchers"}
# What importing a core module may never load, whatever it imports (dnspython itself loads
# socket, so that one is only checked in our own source, above).
NEVER_LOADED = ["asyncio", "aiodocker", "aiohttp", "uvloop"]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_source_imports_no_io(module: str) -> None:
    imported = imported_modules(ROOT / "resolver" / f"{module}.py")
    assert not {name.split(".")[0] for name in imported} & IO_MODULES, imported


def test_config_imports_nothing_of_the_package() -> None:
    imported = imported_modules(ROOT / "resolver" / "config.py")
    assert not [name for name in imported if name.startswith(("resolver", "watchers"))]


@pytest.mark.parametrize("module", [f"resolver.{name}" for name in CORE]
                         + ["watchers.translate"])
def test_importing_a_pure_module_loads_no_event_loop_or_engine_client(module: str) -> None:
    probe = (f"import sys, {module}; "
             f"print(' '.join(m for m in {NEVER_LOADED!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                            text=True, check=True, timeout=60).stdout.split()
    assert loaded == [], f"importing {module} loads {loaded}"
