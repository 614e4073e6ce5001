"""`serve --workers`: `/metrics` merges every worker's snapshot. Counters and histograms are
summed over all workers, stopped ones included (a series never goes backwards, whichever worker
answers); each live worker's gauges carry its `worker` label; a stopped or silent worker's
gauges are left out. (tests/test_workers.py scrapes real workers.)"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.shared_metrics import STALE_AFTER_S, SharedMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Worker:
    """One worker's registry and its SharedMetrics, as a worker process holds them."""

    def __init__(self, directory: Path, index: int, clock: Clock) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter("demo_calls", "calls", ("endpoint",), registry=self.registry)
        self.latency = Histogram(
            "demo_latency_seconds", "latency", buckets=(0.1, 1.0), registry=self.registry
        )
        self.in_flight = Gauge("demo_in_flight", "in flight", registry=self.registry)
        self.shared = SharedMetrics(directory, index, registry=self.registry, clock=clock)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(worker: Worker, accept: str | None = None) -> str:
    body, _ = await worker.shared.render(accept)
    return body.decode()


async def test_counters_and_histograms_are_summed_and_gauges_kept_per_worker(
    tmp_path: Path,
) -> None:
    clock = Clock()
    first, second = Worker(tmp_path, 0, clock), Worker(tmp_path, 1, clock)
    first.calls.labels("test").inc(3)
    second.calls.labels("test").inc(4)
    second.calls.labels("call").inc(1)
    first.latency.observe(0.05)
    second.latency.observe(0.5)
    second.latency.observe(5)
    first.in_flight.set(2)
    second.in_flight.set(7)
    await second.shared.publish()

    for answering in (first, second):  # the same figures, whichever worker is scraped
        got = samples(await scrape(answering))
        assert got[("demo_calls_total", (("endpoint", "test"),))] == 7
        assert got[("demo_calls_total", (("endpoint", "call"),))] == 1
        assert got[("demo_latency_seconds_bucket", (("le", "0.1"),))] == 1
        assert got[("demo_latency_seconds_bucket", (("le", "1.0"),))] == 2
        assert got[("demo_latency_seconds_bucket", (("le", "+Inf"),))] == 3
        assert got[("demo_latency_seconds_count", ())] == 3
        assert got[("demo_latency_seconds_sum", ())] == 5.55
        assert got[("demo_in_flight", (("worker", "0"),))] == 2
        assert got[("demo_in_flight", (("worker", "1"),))] == 7
        assert ("demo_in_flight", ()) not in got


async def test_a_stopped_workers_counts_stay_and_its_gauges_go(tmp_path: Path) -> None:
    clock = Clock()
    first, second = Worker(tmp_path, 0, clock), Worker(tmp_path, 1, clock)
    first.calls.labels("test").inc(1)
    second.calls.labels("test").inc(10)
    second.in_flight.set(1)
    await second.shared.publish(final=True)  # what a worker writes as it stops

    got = samples(await scrape(first))
    assert got[("demo_calls_total", (("endpoint", "test"),))] == 11
    assert ("demo_in_flight", (("worker", "1"),)) not in got
    assert got[("demo_in_flight", (("worker", "0"),))] == 0

    # Its restarted successor (same index, new process) adds to what it left.
    successor = SharedMetrics(tmp_path, 1, registry=CollectorRegistry(), clock=clock)
    successor.path = tmp_path / "worker-1-successor.json"
    await successor.publish()
    got = samples(await scrape(first))
    assert got[("demo_calls_total", (("endpoint", "test"),))] == 11


async def test_a_silent_worker_keeps_its_counts_and_loses_its_gauges(tmp_path: Path) -> None:
    clock = Clock()
    first, second = Worker(tmp_path, 0, clock), Worker(tmp_path, 1, clock)
    second.calls.labels("test").inc(5)
    second.in_flight.set(3)
    await second.shared.publish()  # then it is killed: no final snapshot
    clock.now += STALE_AFTER_S - 0.5
    assert samples(await scrape(first))[("demo_in_flight", (("worker", "1"),))] == 3
    clock.now += 1
    got = samples(await scrape(first))
    assert ("demo_in_flight", (("worker", "1"),)) not in got
    assert got[("demo_calls_total", (("endpoint", "test"),))] == 5


async def test_successive_scrapes_never_go_backwards(tmp_path: Path) -> None:
    clock = Clock()
    first, second = Worker(tmp_path, 0, clock), Worker(tmp_path, 1, clock)
    last = 0.0
    for step in range(6):
        (first if step % 2 else second).calls.labels("test").inc(step + 1)
        await second.shared.publish()
        answering = first if step % 3 else second
        total = samples(await scrape(answering))[("demo_calls_total", (("endpoint", "test"),))]
        assert total >= last
        last = total
    assert last == sum(range(1, 7))


async def test_openmetrics_scrapes_are_merged_too(tmp_path: Path) -> None:
    clock = Clock()
    first, second = Worker(tmp_path, 0, clock), Worker(tmp_path, 1, clock)
    first.calls.labels("test").inc(2)
    second.calls.labels("test").inc(2)
    await second.shared.publish()
    body, content_type = await first.shared.render("application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text")
    families = {f.name: f for f in om_families(body.decode())}
    assert [s.value for s in families["demo_calls"].samples if s.name == "demo_calls_total"] == [4]


async def test_an_unreadable_snapshot_is_skipped(tmp_path: Path) -> None:
    clock = Clock()
    first = Worker(tmp_path, 0, clock)
    first.calls.labels("test").inc(1)
    (tmp_path / "worker-9-1.json").write_text("{not json")
    (tmp_path / "worker-8-1.json").write_text("[1, 2]")
    got = samples(await scrape(first))
    assert got[("demo_calls_total", (("endpoint", "test"),))] == 1
