# The packet handler: bytes and a source address in, an Outcome out (reply bytes, a request to
# forward, or nothing). It owns the error ladder (docs/design.md, rule 7) and two caches, emptied
# when the table changes:
# - answers: a local answer is computed once per (view, lower-cased qname, qtype) and kept as
#   wire records, so a new query shape costs a header parse, two dict lookups and a join;
# - replies (UDP): a local reply depends only on the view and the query's bytes after its ID
#   (flags, the question in the client's case, EDNS), so it is kept under exactly that key and
#   a repeated query costs two dict lookups and a concatenation. Shuffled answers are not kept.
# A name that is not local is looked up in the cache of upstream answers (resolver/cache.py)
# before it is handed to the forwarder; the forward decision is kept too (UDP, same view, same
# bytes after the ID), so a repeated forwarded query skips the parse and the local lookup.
# Still sans-IO.
# Answers come from the table snapshot the handler took at its last change (`_forget`), so
# the caches and what they were computed from change together. `lock` (ANSWER_LOCK): whoever
# calls a handler, or touches its stats or upstream cache, holds it, since the UDP receive
# thread answers beside the event loop (resolver/udp_batch.py, docs/performance.md).
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from ipaddress import ip_address
from typing import NamedTuple

from dns.rcode import BADVERS, REFUSED, SERVFAIL

from resolver.answer import FORWARD, LocalAnswer, Policy, decide
from resolver.cache import AnswerCache
from resolver.ratelimit import RateLimiter, limited_reply
from resolver.slowpath import (
    ParsedSlow,
    parse_any,
    parse_with_dnspython,
    query_of,
    render_with_dnspython,
)
from resolver.stats import How, QueryStats
from resolver.table import NameTable
from resolver.views import View, view_for
from resolver.wire import (
    Query,
    Reject,
    encode_answer_records,
    reject_header,
    render,
    shuffled,
)

log = logging.getLogger(__name__)

# Forwarded and random names (or random sources) would grow the caches without end: past
# this many entries, start again.
MAX_CACHED_ANSWERS = 100_000
MAX_CACHED_VIEWS = 65_536
# Kept replies: a usual query and its reply take a few hundred bytes with the key; queries
# longer than MAX_KEPT_QUERY (padding, big options) are never kept, so at most ~40 MB.
MAX_CACHED_REPLIES = 50_000
MAX_KEPT_QUERY = 512
# One lock for every handler of the process: the server's and takeover's share their counters
# (QueryStats), and the receive thread answers for both.
ANSWER_LOCK = threading.Lock()


class Forward(NamedTuple):
    """Ask upstream. `data` is the client's query as received; `client` who asked (forwards
    in flight are capped per client, docs/forwarding.md)."""

    query: Query
    data: bytes
    client: str = ""


Outcome = bytes | Forward | None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A local answer ready for the wire, or None for "forward"."""

    answer: LocalAnswer
    records: tuple[bytes, ...]


class Handler:
    """Turns one query into one outcome for a client at a source address."""

    def __init__(self, table: NameTable, policy: Policy,
                 limiter: RateLimiter | None = None,
                 upstream_cache: AnswerCache | None = None,
                 stats: QueryStats | None = None) -> None:
        self._table = table
        self._snapshot = table.snapshot
        self.lock = ANSWER_LOCK
        # --http, --log-queries: every query counted (docs/operations.md); None costs a test.
        self.stats = stats
        self._how = How.FAST  # how _handle answered the query it last saw
        self._policy = policy
        self._limiter = limiter  # --rate-limit; None (off) costs one attribute test
        self._upstream_cache = upstream_cache  # --cache-size; None when 0 or no upstream
        self._views: dict[str, View | None] = {}
        self._answers: dict[tuple[str, str, int], Prepared | None] = {}
        # (view key, query bytes after the ID) -> reply bytes after the ID, UDP only.
        self._replies: dict[tuple[str, bytes], bytes] = {}
        # (view key, query bytes after the ID) -> the parsed query, for UDP queries decided
        # "forward" once: a repeat skips the parse and the local lookup (cache hit or not).
        self._forwarded: dict[tuple[str, bytes], Query] = {}
        table.on_change(self._forget)

    def handle(self, data: bytes, source: str, tcp: bool) -> Outcome:
        """Never raises: an unexpected error becomes SERVFAIL and a log line."""
        stats = self.stats
        try:
            if self._limiter is not None:
                verdict = self._limiter.check(source, tcp)
                if verdict is not None:
                    limited = limited_reply(data, verdict, tcp)
                    if stats is not None:
                        stats.note(data, source, tcp, limited, How.RATE_LIMITED)
                    return limited
            if not tcp:
                view = self._views.get(source)
                if view is not None:
                    key = (view.key, data[2:])
                    kept = self._replies.get(key)
                    if kept is not None:
                        if stats is not None:
                            stats.hit(data, source, kept)
                        return data[:2] + kept
                    seen = self._forwarded.get(key)
                    if seen is not None:
                        if self._upstream_cache is not None:
                            cached = self._upstream_cache.lookup(seen, seen.max_udp_size())
                            if cached is not None:
                                reply = data[:2] + cached
                                if stats is not None:
                                    stats.note(data, source, tcp, reply, How.UPSTREAM_CACHE)
                                return reply
                        return self._forward_again(seen, data, source)
            outcome = self._handle(data, source, tcp)
            if stats is not None and not isinstance(outcome, Forward):
                stats.note(data, source, tcp, outcome, self._how_answered(outcome))
            return outcome
        except Exception:
            log.exception("internal error answering a %d-byte query from %s", len(data), source)
            if len(data) < 12:
                return None
            qid, flags = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:4], "big")
            reply = reject_header(qid, flags, SERVFAIL)
            if stats is not None:
                stats.note(data, source, tcp, reply, How.ERROR)
            return reply

    def _forward_again(self, seen: Query, data: bytes, source: str) -> Forward:
        """A UDP query whose bytes after the ID were decided "forward" before, from the same
        view and table, and not in the upstream cache: forwarded under its own ID."""
        self._how = How.UPSTREAM_CACHE
        query = Query((data[0] << 8) | data[1], seen.flags, seen.question, seen.qname,
                      seen.qtype, seen.edns)
        return Forward(query, data, source)

    def _how_answered(self, reply: bytes | None) -> int:
        """How the query `_handle` just answered was answered: local replies are never
        REFUSED but to a stranger."""
        how = self._how
        local = how == How.FAST or how == How.SLOW
        if local and reply is not None and reply[3] & 0x0F == REFUSED:
            return How.REFUSED
        return how

    def error_reply(self, query: Query, rcode: int, tcp: bool) -> bytes:
        """An empty reply with `rcode`: SERVFAIL when forwarding failed (never silence),
        REFUSED past --max-forwards (docs/forwarding.md)."""
        return render(query, rcode, (), query.max_size(tcp))

    def _handle(self, data: bytes, source: str, tcp: bool) -> Outcome:
        """The one ladder for both parsers: reject, BADVERS, forward, or answer and keep."""
        self._how = How.REJECTED
        parsed = parse_any(data)
        if isinstance(parsed, Reject):
            return parsed.reply
        query = query_of(parsed)
        if _unsupported_edns(query):
            return render(query, BADVERS, (), query.max_size(tcp))
        prepared = self._prepare(source, query.qname, query.qtype)
        if prepared is None:
            self._how = How.UPSTREAM_CACHE
            return self._cached_or_forward(query, data, source, tcp)
        # _render's choice, for the metrics (docs/operations.md)
        fast = isinstance(parsed, Query) and prepared.answer.answer_only
        self._how = How.FAST if fast else How.SLOW
        reply = _render(parsed, data, prepared, tcp)
        if reply is not None and not tcp:
            self._keep(source, data, reply, prepared.answer)
        return reply

    def _cached_or_forward(self, query: Query, data: bytes, source: str, tcp: bool) -> Outcome:
        """The upstream cache's reply, else a request to forward; the decision is remembered
        for the same bytes from the same view (UDP only)."""
        if not tcp:
            view = self._views.get(source)
            if view is not None and len(data) <= MAX_KEPT_QUERY and self._snapshot.synced:
                if len(self._forwarded) >= MAX_CACHED_REPLIES:
                    self._forwarded.clear()
                self._forwarded[(view.key, data[2:])] = query
        if self._upstream_cache is None:
            return Forward(query, data, source)
        cached = self._upstream_cache.lookup(query, query.max_size(tcp))
        if cached is None:
            return Forward(query, data, source)
        return data[:2] + cached

    def _keep(self, source: str, data: bytes, reply: bytes, answer: LocalAnswer) -> None:
        """Remember a local UDP reply for the next query with the same bytes after its ID
        from the same view. Only the ID differs between the two replies."""
        view = self._views.get(source)
        if view is None or answer.shuffle or len(data) > MAX_KEPT_QUERY:
            return
        if not self._snapshot.synced:
            return
        if len(self._replies) >= MAX_CACHED_REPLIES:
            self._replies.clear()
        self._replies[(view.key, data[2:])] = reply[2:]

    def _prepare(self, source: str, qname: str, qtype: int) -> Prepared | None:
        view = self._view(source)
        key = (view.key if view is not None else "", qname, qtype)
        try:
            return self._answers[key]
        except KeyError:
            pass
        synced = self._snapshot.synced
        decision = decide(view, synced, qname, qtype, self._policy)
        prepared = None
        if decision is not FORWARD:
            rrs = [(record.rdata, record.ttl) for record in decision.records]
            prepared = Prepared(decision, encode_answer_records(qname, rrs))
        if len(self._answers) >= MAX_CACHED_ANSWERS:
            self._answers.clear()
        if synced:
            self._answers[key] = prepared
        return prepared

    def _view(self, source: str) -> View | None:
        try:
            return self._views[source]
        except KeyError:
            pass
        try:
            address = ip_address(source.split("%", 1)[0])
        except ValueError:
            view = None
        else:
            view = view_for(self._snapshot, address)
        if len(self._views) >= MAX_CACHED_VIEWS:
            self._views.clear()
        self._views[source] = view
        return view

    def _forget(self) -> None:
        """The table changed: answer from its new snapshot, and forget what the old one gave."""
        with self.lock:
            self._snapshot = self._table.snapshot
            self._views.clear()
            self._answers.clear()
            self._replies.clear()
            self._forwarded.clear()


def _render(parsed: Query | ParsedSlow, data: bytes, prepared: Prepared,
            tcp: bool) -> bytes | None:
    """The reply bytes: the fast renderer for a fast-parsed query whose answer has only
    answer records, dnspython for everything else (both give the same bytes)."""
    answer = prepared.answer
    if isinstance(parsed, Query) and answer.answer_only:
        records = shuffled(prepared.records) if answer.shuffle else prepared.records
        return render(parsed, answer.rcode, records, parsed.max_size(tcp), answer.authoritative)
    slow = parsed if isinstance(parsed, ParsedSlow) else parse_with_dnspython(data)
    if isinstance(slow, Reject):
        return slow.reply
    return render_with_dnspython(slow, answer, slow.query.max_size(tcp))


def _unsupported_edns(query: Query) -> bool:
    """EDNS above version 0 gets BADVERS (RFC 6891 §6.1.3)."""
    return query.edns is not None and query.edns.version > 0
