"""Pins every runtime dependency of pyproject.toml at its declared lower bound (`name>=X` ->
`name==X`) and prints them as pip constraints, so that `make lowest` can check that the bounds
we declare really work."""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def lowest_pins(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    pins = []
    for requirement in project["dependencies"]:
        found = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([0-9][^,;\s]*)\s*", requirement)
        if found is None:
            sys.exit(f"lowest.py: {requirement!r} has no plain '>=' lower bound")
        pins.append(f"{found[1].split('[')[0]}=={found[2]}")
    return pins


if __name__ == "__main__":
    print("\n".join(lowest_pins(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"))))
