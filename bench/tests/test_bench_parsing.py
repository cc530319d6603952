# The benchmark suite's parsers and statistics (bench/suite): dnsperf's summary and verbose
# lines, /proc/<pid>/stat CPU fields, percentiles and spreads, the saturation search, the
# snapshot names every peer is configured from, and the fake upstream's replies. No servers,
# no dnsperf: the inputs are text in the formats those tools print.
from __future__ import annotations

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from bench.suite.dnsperf import MAX_LOSS, saturation
from bench.suite.fake_upstream import reply
from bench.suite.names import endpoints, host_records, pointer_records
from bench.suite.stats import (
    DnsperfSummary,
    cpu_ticks,
    merge_summaries,
    parent_pid,
    parse_latencies,
    parse_summary,
    percentile,
    spread,
)

# dnsperf 2.10's closing block, as printed after a run (the numbers are this test's own).
DNSPERF_OUTPUT = """\
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         200000
  Queries completed:    199800 (99.90%)
  Queries lost:         200 (0.10%)

  Response codes:       NOERROR 199000 (99.60%), NXDOMAIN 800 (0.40%)
  Average packet size:  request 30, response 46
  Run time (s):         10.000238
  Queries per second:   19979.524

  Average Latency (s):  0.000090 (min 0.000048, max 0.000400)
"""


def test_summary_reads_counts_rate_and_rcodes() -> None:
    summary = parse_summary(DNSPERF_OUTPUT)
    assert (summary.sent, summary.completed, summary.lost) == (200000, 199800, 200)
    assert summary.qps == pytest.approx(19979.524)
    assert summary.runtime == pytest.approx(10.000238)
    assert summary.rcodes == {"NOERROR": 199000, "NXDOMAIN": 800}
    assert summary.loss == pytest.approx(0.001)


def test_summary_without_statistics_is_an_error() -> None:
    with pytest.raises(ValueError, match="Queries sent"):
        parse_summary("[Status] Command line: dnsperf -s 127.0.0.1\nError: could not bind\n")


def test_runs_in_turn_add_up_as_one_run() -> None:
    first = DnsperfSummary(100, 99, 1, 49.5, 2.0, {"NOERROR": 99})
    second = DnsperfSummary(300, 300, 0, 100.0, 3.0, {"NOERROR": 290, "NXDOMAIN": 10})
    merged = merge_summaries([first, second])
    assert (merged.sent, merged.completed, merged.lost) == (400, 399, 1)
    assert merged.qps == pytest.approx(399 / 5.0)  # answered over the time taken together
    assert merged.runtime == 5.0
    assert merged.rcodes == {"NOERROR": 389, "NXDOMAIN": 10}


def test_verbose_lines_give_latencies_and_skip_timeouts_and_status() -> None:
    lines = [
        "[Status] Sending queries (to 127.0.0.1:5353)",
        "> NOERROR c7 A 0.000123",
        "> NXDOMAIN Nosuch.invalid AAAA 0.002000",
        "> T c8 A 5.000000",
        "  Queries sent:         3",
    ]
    assert parse_latencies(lines) == [0.000123, 0.002]


def test_percentile_is_nearest_rank_of_unsorted_values() -> None:
    values = [float(v) for v in range(1000, 0, -1)]  # 1000 .. 1, unsorted on purpose
    assert percentile(values, 0.5) == 500.0
    assert percentile(values, 0.99) == 990.0
    assert percentile(values, 0.999) == 999.0
    assert percentile([7.0], 0.999) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_cpu_ticks_count_fields_after_a_command_name_with_spaces_and_parens() -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    line = "4242 (python3 (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 3 0"
    assert cpu_ticks(line) == 1234 + 567
    assert parent_pid(line) == 1


def test_spread_is_median_with_min_and_max() -> None:
    found = spread([3.0, 1.0, 2.0])
    assert found is not None
    assert found.as_dict() == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert spread([]) is None


def summary_at(qps: float, loss: float) -> DnsperfSummary:
    sent = 100_000
    lost = int(sent * loss)
    return DnsperfSummary(sent, sent - lost, lost, qps, 15.0)


def test_saturation_steps_down_until_the_loss_is_within_budget() -> None:
    asked: list[float | None] = []
    outcomes = [summary_at(60_000, 0.02), summary_at(52_000, 0.005), summary_at(47_000, 0.0)]

    def run(limit: float | None) -> DnsperfSummary:
        asked.append(limit)
        return outcomes[len(asked) - 1]

    found = saturation(run)
    assert found.qps == 47_000
    assert asked == [None, pytest.approx(54_000), pytest.approx(46_800)]
    assert len(found.attempts) == 3


def test_saturation_within_budget_at_once_needs_one_run() -> None:
    found = saturation(lambda limit: summary_at(80_000, MAX_LOSS))
    assert found.qps == 80_000
    assert len(found.attempts) == 1


def test_saturation_never_within_budget_has_no_rate() -> None:
    found = saturation(lambda limit: summary_at(10_000, 0.5))
    assert found.qps is None


SNAPSHOT = {
    "scopedns_snapshot": 1,
    "networks": [{"Name": "app", "Id": "n1"}, {"Name": "db", "Id": "n2"}],
    "containers": [
        {"Name": "/web", "NetworkSettings": {"Networks": {
            "app": {"IPAddress": "127.16.0.2", "Aliases": ["web", "front"]},
            "bridge": {"IPAddress": "172.17.0.2"}}}},
        {"Name": "/api", "NetworkSettings": {"Networks": {
            "app": {"IPAddress": "127.16.0.3", "Aliases": ["front"]},
            "db": {"IPAddress": "127.16.1.3", "Aliases": None}}}},
        {"Name": "/stopped", "NetworkSettings": {"Networks": {"app": {"IPAddress": ""}}}},
    ],
}


def test_snapshot_endpoints_skip_the_default_bridge_and_addressless_ones() -> None:
    found = endpoints(SNAPSHOT)
    assert [(e.container, e.network, str(e.address)) for e in found] == [
        ("web", "app", "127.16.0.2"), ("api", "app", "127.16.0.3"), ("api", "db", "127.16.1.3")]
    assert found[0].aliases == ("front",)  # the container's own name is not an alias


def test_flat_records_keep_the_first_holder_of_a_shared_name() -> None:
    records = host_records(endpoints(SNAPSHOT))
    assert str(records["front"]) == "127.16.0.2"
    assert str(records["api.db"]) == "127.16.1.3"
    assert pointer_records(endpoints(SNAPSHOT))["3.1.16.127.in-addr.arpa"] == "api.db"


def test_fake_upstream_answers_invalid_names_and_refuses_others() -> None:
    query = dns.message.make_query("f1.Bench.INVALID", "A")
    answer = dns.message.from_wire(reply(query.to_wire()) or b"")
    assert answer.id == query.id and answer.rcode() == dns.rcode.NOERROR
    assert [r.to_text() for r in answer.answer[0]] == ["192.0.2.53"]
    assert answer.answer[0].ttl == 0
    refused = dns.message.from_wire(reply(dns.message.make_query("c7", "A").to_wire()) or b"")
    assert refused.rcode() == dns.rcode.REFUSED and not refused.answer
    nodata = reply(dns.message.make_query("x.invalid", dns.rdatatype.AAAA).to_wire()) or b""
    assert not dns.message.from_wire(nodata).answer
    assert reply(b"\x00\x01") is None
