# The atheris (libFuzzer) target for the whole handler: `make fuzz`, or
#   .venv/bin/python -m tests.fuzz.fuzz_handler -max_total_time=60 CORPUS_DIR tests/fuzz/corpus
# The first input byte picks the source and the transport; the rest is the packet. Every input
# goes through Handler.handle and the oracle of tests/fuzz/oracle.py; TCP inputs also go
# through the TcpFramer in splits drawn from the input, each framed message answered as the
# server would. resolver and dnspython are instrumented for coverage when run as a program;
# imported by pytest (tests/fuzz/test_corpus.py) nothing is instrumented and atheris is not
# needed.
from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Any

_instrument: AbstractContextManager[Any] = nullcontext()
if __name__ == "__main__":
    import atheris

    _instrument = atheris.instrument_imports(include=["resolver", "dns"])

with _instrument:
    from resolver.framing import TcpFramer
    from tests.fuzz.oracle import (
        SOURCES,
        build_handler,
        check_framer,
        check_outcome,
        record_errors,
    )

HANDLER = build_handler()
SOURCE_LIST = list(SOURCES.values())
TCP_BIT = 0x80
ERRORS = record_errors()


def test_one_input(data: bytes) -> None:
    if not data:
        return
    source = SOURCE_LIST[(data[0] & 0x7F) % len(SOURCE_LIST)]
    tcp = bool(data[0] & TCP_BIT)
    packet = data[1:]
    check_outcome(packet, tcp, HANDLER.handle(packet, source, tcp))
    if tcp:
        cuts = [byte * 3 + index for index, byte in enumerate(packet[:8])]
        check_framer(packet, cuts)
        for message in TcpFramer().feed(packet):
            check_outcome(message, True, HANDLER.handle(message, source, True))
    ERRORS.check()


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
