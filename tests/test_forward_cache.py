# The cache of upstream answers (resolver/cache.py, docs/forwarding-cache.md): what is kept and
# for how long (answer TTLs, RFC 2308 negative TTLs, never SERVFAIL/REFUSED/TC/other rcodes),
# how a hit looks to the client (its ID, its question case, TTLs counted down), the keys that
# keep DO/EDNS/RD apart, the LRU bound; then on a loopback server: repeats never reach the
# upstream, --cache-size 0 turns it off, and a name that becomes local is answered locally.
from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from resolver.cache import MAX_NEGATIVE_TTL, AnswerCache
from resolver.cli import build_parser, config_from_args
from resolver.wire import Query, parse_query
from testkit.topology import attach, container
from tests.conftest import Fakes
from tests.fakes import FAKE_ADDRESS
from tests.servers import Serve, addresses
from tests.test_upstream_faults import OUTSIDE, ask, start


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def query_of(name: str, rdtype: str = "A", *, payload: int | None = None, do: bool = False,
             rd: bool = True) -> tuple[Query, dns.message.Message]:
    message = dns.message.make_query(name, rdtype, use_edns=payload is not None or do,
                                     payload=payload or 1232, want_dnssec=do)
    if not rd:
        message.flags &= ~dns.flags.RD
    parsed = parse_query(message.to_wire())
    assert isinstance(parsed, Query)
    return parsed, message


def upstream_reply(message: dns.message.Message, *, answer_ttls: tuple[int, ...] = (300,),
                   rcode: int = dns.rcode.NOERROR, soa: tuple[int, int] | None = None,
                   tc: bool = False, records: int = 1, options: bool = False) -> bytes:
    """The upstream's reply to `message`: A records with these TTLs, an SOA with (TTL,
    MINIMUM) in the authority section, or just the rcode."""
    reply = dns.message.make_response(message)
    reply.id = 4242  # the upstream's own ID, never the client's
    reply.set_rcode(dns.rcode.Rcode(rcode))
    name = message.question[0].name
    for index, ttl in enumerate(answer_ttls):
        hosts = [f"192.0.2.{index * records + n + 1}" for n in range(records)]
        owner = name if index == 0 else dns.name.Name((f"n{index}".encode(), *name.labels))
        reply.answer.append(dns.rrset.from_text_list(owner, ttl, "IN", "A", hosts))
    if soa is not None:
        reply.authority.append(dns.rrset.from_text(
            "invalid.", soa[0], "IN", "SOA", f"ns.invalid. host.invalid. 1 2 3 4 {soa[1]}"))
    if tc:
        reply.flags |= dns.flags.TC
    if options and reply.edns >= 0:
        cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"x" * 16)
        reply.use_edns(0, reply.ednsflags, 1232, options=[cookie])
    return reply.to_wire(max_size=65535)


def served(cache: AnswerCache, name: str, rdtype: str = "A",
           **flags: object) -> dns.message.Message | None:
    query, message = query_of(name, rdtype, **flags)  # type: ignore[arg-type]
    after_id = cache.lookup(query, 65535)
    if after_id is None:
        return None
    reply = dns.message.from_wire(message.id.to_bytes(2, "big") + after_id)
    assert reply.id == message.id
    return reply


def ttls(reply: dns.message.Message) -> list[int]:
    return [rrset.ttl for section in (reply.answer, reply.authority) for rrset in section]


# ----- lifetimes --------------------------------------------------------------------------------

def test_answer_is_served_until_its_smallest_ttl_with_ttls_counted_down() -> None:
    clock = Clock()
    cache = AnswerCache(100, clock)
    query, message = query_of("www.Example.invalid")
    cache.store(query, upstream_reply(message, answer_ttls=(300, 60)))
    first = served(cache, "WWW.example.INVALID")
    assert first is not None and first.question[0].name.to_text() == "WWW.example.INVALID."
    assert ttls(first) == [300, 60] and first.rcode() == dns.rcode.NOERROR
    clock.now += 59.5
    later = served(cache, "www.example.invalid")
    assert later is not None and ttls(later) == [241, 1]
    clock.now += 0.5  # 60 s: the 60 s record is gone, so is the reply
    assert served(cache, "www.example.invalid") is None
    assert len(cache) == 0


@pytest.mark.parametrize(("soa", "lifetime"), [((900, 30), 30), ((20, 3600), 20),
                                               ((86_400, 86_400), MAX_NEGATIVE_TTL)])
@pytest.mark.parametrize("rcode", [dns.rcode.NXDOMAIN, dns.rcode.NOERROR])
def test_negative_answer_lives_min_of_soa_ttl_and_minimum(soa: tuple[int, int], lifetime: int,
                                                         rcode: int) -> None:
    clock = Clock()
    cache = AnswerCache(100, clock)
    query, message = query_of("gone.invalid")
    cache.store(query, upstream_reply(message, answer_ttls=(), rcode=rcode, soa=soa))
    hit = served(cache, "gone.invalid")
    assert hit is not None and hit.rcode() == rcode and hit.answer == []
    assert ttls(hit) == [soa[0]]
    clock.now += lifetime - 0.01
    assert served(cache, "gone.invalid") is not None
    clock.now += 0.01
    assert served(cache, "gone.invalid") is None


@pytest.mark.parametrize("reply_kind", ["nxdomain-no-soa", "nodata-no-soa", "servfail",
                                        "refused", "formerr", "tc", "ttl-0", "soa-minimum-0"])
def test_replies_that_are_never_cached(reply_kind: str) -> None:
    cache = AnswerCache(100, Clock())
    query, message = query_of("nope.invalid")
    kinds: dict[str, dict[str, object]] = {
        "nxdomain-no-soa": {"answer_ttls": (), "rcode": dns.rcode.NXDOMAIN},
        "nodata-no-soa": {"answer_ttls": ()},
        "servfail": {"answer_ttls": (), "rcode": dns.rcode.SERVFAIL, "soa": (60, 60)},
        "refused": {"answer_ttls": (), "rcode": dns.rcode.REFUSED},
        "formerr": {"rcode": dns.rcode.FORMERR},
        "tc": {"tc": True},
        "ttl-0": {"answer_ttls": (300, 0)},
        "soa-minimum-0": {"answer_ttls": (), "rcode": dns.rcode.NXDOMAIN, "soa": (60, 0)},
    }
    cache.store(query, upstream_reply(message, **kinds[reply_kind]))  # type: ignore[arg-type]
    assert len(cache) == 0 and served(cache, "nope.invalid") is None


def test_malformed_reply_is_not_cached() -> None:
    cache = AnswerCache(100, Clock())
    query, message = query_of("broken.invalid")
    wire = upstream_reply(message)
    cache.store(query, wire[:-3])  # the last record runs off the end
    cache.store(query, wire + b"\x00")  # a byte past the last record
    assert len(cache) == 0


# ----- keys, sizes, options ---------------------------------------------------------------------

def test_do_bit_edns_rd_and_type_keep_replies_apart() -> None:
    cache = AnswerCache(100, Clock())
    query, message = query_of("k.invalid", payload=1232, do=True)
    cache.store(query, upstream_reply(message))
    assert served(cache, "k.invalid", payload=1232, do=True) is not None
    assert served(cache, "k.invalid", payload=4096, do=True) is not None  # size is no key
    assert served(cache, "k.invalid", payload=1232) is None  # no DO
    assert served(cache, "k.invalid") is None  # no EDNS: an OPT in the reply would be wrong
    assert served(cache, "k.invalid", payload=1232, do=True, rd=False) is None
    assert served(cache, "k.invalid", "AAAA", payload=1232, do=True) is None


def test_reply_bigger_than_the_client_takes_is_not_served_over_udp() -> None:
    cache = AnswerCache(100, Clock())
    query, message = query_of("big.invalid", payload=4096)
    cache.store(query, upstream_reply(message, records=60))  # ~1 kB
    small, _ = query_of("big.invalid", payload=512)
    assert cache.lookup(small, small.max_udp_size()) is None  # forwarded again, cut there
    large, _ = query_of("big.invalid", payload=4096)
    assert cache.lookup(large, large.max_udp_size()) is not None


def test_edns_options_of_the_upstream_exchange_are_not_replayed() -> None:
    cache = AnswerCache(100, Clock())
    query, message = query_of("cookie.invalid", payload=1232)
    cache.store(query, upstream_reply(message, options=True))
    hit = served(cache, "cookie.invalid", payload=1232)
    assert hit is not None and hit.edns == 0 and not hit.options
    assert addresses(hit) == ["192.0.2.1"]


def test_authoritative_bit_is_cleared_on_a_cached_answer() -> None:
    cache = AnswerCache(100, Clock())
    query, message = query_of("aa.invalid")
    wire = bytearray(upstream_reply(message))
    wire[2] |= 0x04  # AA
    cache.store(query, bytes(wire))
    hit = served(cache, "aa.invalid")
    assert hit is not None and not hit.flags & dns.flags.AA


def test_least_recently_used_entry_goes_first() -> None:
    cache = AnswerCache(2, Clock())
    for name in ("one.invalid", "two.invalid"):
        query, message = query_of(name)
        cache.store(query, upstream_reply(message))
    assert served(cache, "one.invalid") is not None  # "two" is now the least recently used
    query, message = query_of("three.invalid")
    cache.store(query, upstream_reply(message))
    assert len(cache) == 2 and served(cache, "two.invalid") is None
    assert served(cache, "one.invalid") is not None and served(cache, "three.invalid") is not None


# ----- on a loopback server ---------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_repeated_forwarded_query_is_answered_from_the_cache(
        serve: Serve, fakes: Fakes, transport: str) -> None:
    upstream = await fakes()
    server = await start(serve, upstream)
    replies = [await ask(server, name, transport)
               for name in ("Cached.invalid", "cached.INVALID", "cached.invalid")]
    assert [addresses(r) for r in replies] == [[FAKE_ADDRESS]] * 3
    assert [r.question[0].name.to_text() for r in replies] == [
        "Cached.invalid.", "cached.INVALID.", "cached.invalid."]
    assert upstream.seen == [(transport, "Cached.invalid.")]  # asked once


async def test_cache_size_0_forwards_every_query(serve: Serve, fakes: Fakes) -> None:
    upstream = await fakes()
    server = await start(serve, upstream, cache_size=0)
    for _ in range(3):
        assert addresses(await ask(server, "uncached.invalid")) == [FAKE_ADDRESS]
    assert len(upstream.seen) == 3


async def test_a_cached_name_that_becomes_local_is_answered_locally(
        serve: Serve, fakes: Fakes) -> None:
    upstream = await fakes()
    server = await start(serve, upstream)
    for _ in range(3):  # forwarded once, then from the cache (and its fast path)
        assert addresses(await ask(server, "newcomer.frontnet")) == [FAKE_ADDRESS]
    server.table.upsert_container(container("newcomer", attach(OUTSIDE, 9)))
    assert addresses(await ask(server, "newcomer.frontnet")) == ["127.62.0.9"]
    assert len(upstream.seen) == 1


def test_cache_size_flag(monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    def configured(*argv: str) -> int:
        args = build_parser().parse_args(["serve", "--no-upstream", *argv])
        return config_from_args(args, "/nonexistent").cache_size

    assert configured() == 10_000
    assert configured("--cache-size", "0") == 0
    with pytest.raises(SystemExit):
        configured("--cache-size", "-1")
    assert "argument --cache-size: '-1' must be at least 0" in capsys.readouterr().err
    monkeypatch.setenv("SCOPEDNS_CACHE_SIZE", "42")
    assert configured() == 42
    monkeypatch.setenv("SCOPEDNS_CACHE_SIZE", "lots")
    with pytest.raises(ValueError, match="SCOPEDNS_CACHE_SIZE"):
        configured()


async def test_cache_size_0_repeats_are_forwarded_under_each_clients_id(
        serve: Serve, fakes: Fakes) -> None:
    """The handler keeps the "forward" decision for a query's bytes after its ID: a repeat
    (another ID) still gets its own ID and question back, from the upstream or as SERVFAIL,
    and a name that becomes local is answered locally at once."""
    upstream = await fakes()
    server = await start(serve, upstream, cache_size=0)
    for _ in range(3):  # dnspython checks the reply's ID and question against its query
        assert addresses(await ask(server, "Repeat.frontnet")) == [FAKE_ADDRESS]
    upstream.mode = "servfail"
    failed = await ask(server, "Repeat.frontnet")
    assert failed.rcode() == dns.rcode.SERVFAIL
    assert failed.question[0].name.to_text() == "Repeat.frontnet."
    server.table.upsert_container(container("repeat", attach(OUTSIDE, 9)))
    assert addresses(await ask(server, "Repeat.frontnet")) == ["127.62.0.9"]
    assert len(upstream.seen) == 4
