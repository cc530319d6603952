# Keeps the fuzz harness from rotting without running the fuzzer: every seed of the corpus goes
# through the target's test function (the same oracle), so `make test` fails if the harness,
# the oracle or a seed stops matching the handler.
from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.fuzz_handler import test_one_input as fuzz_one_input

CORPUS = sorted((Path(__file__).parent / "corpus").iterdir())


def test_corpus_has_the_seeds() -> None:
    assert len(CORPUS) >= 5


@pytest.mark.parametrize("seed", CORPUS, ids=[path.name for path in CORPUS])
def test_fuzz_target_accepts_seed(seed: Path) -> None:
    fuzz_one_input(seed.read_bytes())


def test_fuzz_target_fails_on_a_broken_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """The target is not vacuous: a handler that answers a QR=1 packet is caught."""
    from tests.fuzz import fuzz_handler

    monkeypatch.setattr(fuzz_handler.HANDLER, "handle", lambda data, source, tcp: data)
    with pytest.raises(AssertionError):
        fuzz_one_input(b"\x00" + b"\x00\x01\x81\x00" + bytes(8))
