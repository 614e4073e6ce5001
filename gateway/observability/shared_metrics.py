"""`/metrics` of `serve --workers N` as one service, whichever worker the scrape reaches.

The kernel hands each new connection to any worker (SO_REUSEPORT), so a scrape of one
worker's own registry would jump between workers' counts from scrape to scrape. Instead each
worker writes a snapshot of its registry to a directory the supervisor made (every
`SNAPSHOT_INTERVAL_S`, at each scrape it answers, and when it stops), and answers a scrape
with the merge of every snapshot there:

- counters, histograms and summaries are **summed** over every worker that ran under this
  supervisor, exited and restarted ones included (their last snapshot stays), so a series
  never goes backwards, whichever worker answers;
- gauges describe one process (in-flight requests, memory, the limiter's state): each live
  worker's gauges carry a `worker` label; those of a worker that stopped, or whose snapshot
  is older than `STALE_AFTER_S`, are left out.

A sibling's counts are at most `SNAPSHOT_INTERVAL_S` old. Everything goes through
prometheus-client's public API (`registry.collect()`, `Metric`, its encoders); its
multiprocess mode is not used because it does not fit these semantics: it drops custom
collectors (the process and platform collectors), labels gauges by pid rather than by worker,
must be chosen by an environment variable before prometheus-client is imported, and writes a
memory-mapped file on every update of every metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL_S = 1.0
STALE_AFTER_S = 5.0
SUMMED_TYPES = frozenset({"counter", "histogram", "summary"})
WORKER_LABEL = "worker"


class SharedMetrics:
    """One worker's side: writes its snapshots and answers scrapes with the merge."""

    def __init__(
        self,
        directory: Path,
        index: int,
        *,
        registry: CollectorRegistry = REGISTRY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.index = index
        self.path = directory / f"worker-{index}-{os.getpid()}.json"
        self._registry = registry
        self._clock = clock
        self._writing = asyncio.Lock()  # a periodic write and a scrape's must not interleave

    def snapshot(self, *, final: bool = False) -> bytes:
        """This worker's registry now, as the bytes of its snapshot file."""
        families = [
            [
                m.name,
                m.documentation,
                m.type,
                m.unit,
                [[s.name, s.labels, s.value] for s in m.samples],
            ]
            for m in self._registry.collect()
        ]
        return json.dumps(
            {"worker": self.index, "at": self._clock(), "final": final, "families": families}
        ).encode()

    async def publish(self, *, final: bool = False) -> None:
        data = self.snapshot(final=final)
        async with self._writing:
            await asyncio.to_thread(_replace, self.path, data)

    async def render(self, accept: str | None) -> tuple[bytes, str]:
        """Every worker's metrics merged, in the format `accept` asks for: (body, type)."""
        await self.publish()
        snapshots = await asyncio.to_thread(read_snapshots, self.directory)
        encoder, content_type = choose_encoder(accept or "")
        return encoder(Merged(snapshots, self._clock())), content_type


def _replace(path: Path, data: bytes) -> None:
    # Write then rename: a reader sees the old snapshot or the new one, never half of one.
    partial = path.with_suffix(".tmp")
    partial.write_bytes(data)
    os.replace(partial, path)


def read_snapshots(directory: Path) -> list[dict[str, Any]]:
    snapshots = []
    for path in sorted(directory.glob("worker-*.json")):
        try:
            snapshot = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:  # removed meanwhile, or not ours
            log.warning("skipping metrics snapshot %s: %s", path.name, exc)
            continue
        if isinstance(snapshot, dict) and isinstance(snapshot.get("families"), list):
            snapshots.append(snapshot)
    return snapshots


class Merged:
    """The snapshots as one registry (an object with `collect()`, as the encoders take)."""

    def __init__(self, snapshots: list[dict[str, Any]], now: float) -> None:
        self._snapshots = snapshots
        self._now = now

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]]] = {}
        for snapshot in self._snapshots:
            live = (
                not snapshot.get("final")
                and self._now - float(snapshot.get("at", 0)) <= STALE_AFTER_S
            )
            worker = str(snapshot.get("worker"))
            for name, documentation, typ, unit, samples in snapshot["families"]:
                summed = typ in SUMMED_TYPES
                if not summed and not live:
                    continue
                family = families.get(name)
                if family is None:
                    family = families[name] = Metric(name, documentation, typ, unit)
                    sums[name] = {}
                if not summed:
                    for sample_name, labels, value in samples:
                        family.add_sample(sample_name, {**labels, WORKER_LABEL: worker}, value)
                    continue
                totals = sums[name]
                for sample_name, labels, value in samples:
                    key = (sample_name, tuple(sorted(labels.items())))
                    entry = totals.get(key)
                    if entry is None:
                        totals[key] = [sample_name, labels, value]
                    else:
                        entry[2] += value
        for name, family in families.items():
            for sample_name, labels, value in sums[name].values():
                family.add_sample(sample_name, labels, value)
            yield family


SHARED_METRICS: web.AppKey[SharedMetrics] = web.AppKey("mcpgw_shared_metrics", SharedMetrics)


async def shared_metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Publish this worker's snapshot every `SNAPSHOT_INTERVAL_S`, and a final one at exit."""
    shared = app[SHARED_METRICS]

    async def publish_periodically() -> None:
        while True:
            try:
                await shared.publish()
            except OSError as exc:  # a full or vanished disk must not stop the worker
                log.warning("cannot write the metrics snapshot: %s", exc)
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)

    task = asyncio.create_task(publish_periodically())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    with contextlib.suppress(OSError):
        await shared.publish(final=True)
