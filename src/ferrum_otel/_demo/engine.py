"""A simulated continuous-batching engine, instrumented only through ferrum-otel's public API.

``concurrency`` clients each send a request, wait for its last token, and send the next
(seeded sizes), until ``requests`` were served.  Requests wait in a queue and are admitted
while the running batch is below ``max_batch`` and the KV cache has blocks for them; they
prefill (shared system prompts hit the prefix cache and prefill less), and the prefill step
produces each request's first token, as a real engine's does; then they decode one token
per step, streaming each token to their client, until they stop (``stop``) or reach
``max_tokens`` (``length``).  When the KV cache runs out of blocks mid-decode, the newest
running request is preempted: its blocks are freed and it goes back to the front of the
queue, to prefill again later.  At every step the engine notes what bound the batch: the
clients (nothing more was waiting), ``max_batch``, or the KV cache.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

import attrs

import ferrum_otel
from ferrum_otel.schema import BatchingMetrics, CacheStats, PrefixCacheStats, SchedulerStats

MODEL = "llama-3-8b-sim"
BLOCK_TOKENS = 16
PREFIXES = 4  # distinct system prompts clients share


@attrs.define
class SimRequest:
    """One request as the simulated engine sees it, and what its client observed."""

    index: int
    prompt_tokens: int
    output_tokens: int  # where the model would stop by itself (end of sequence)
    max_tokens: int
    prefix: int
    prefix_tokens: int
    arrived: float = 0.0
    tracker: Any = None
    generated: int = 0
    blocks: int = 0
    prefix_hit: bool = False
    preemptions: int = 0
    token_times: list[float] = attrs.Factory(list)
    marks: list[tuple[str, float]] = attrs.Factory(list)
    finished: float = 0.0
    queue: asyncio.Queue[float | None] | None = None

    def mark(self, phase: str, at: float) -> None:
        self.marks.append((phase, at))
        self.tracker.mark_phase(phase)


@attrs.define
class DemoConfig:
    """The simulated engine's settings (not the schema's ``EngineConfig``)."""

    requests: int = 48
    concurrency: int = 12  # clients with a request in flight
    max_batch: int = 32  # the most requests running together
    kv_blocks: int = 300
    step_s: float = 0.004  # one decode step
    prefill_s_per_token: float = 0.00002
    seed: int = 7


BOUNDS = ("clients", "max batch", "KV cache")


class SimEngine:
    """The scheduler loop; ``run()`` serves every request and returns them."""

    def __init__(self, config: DemoConfig) -> None:
        self.c = config
        self.rng = random.Random(config.seed)
        self.waiting: list[SimRequest] = []
        self.running: list[SimRequest] = []
        self.free_blocks = config.kv_blocks
        self.cached_prefixes: set[int] = set()
        self.done: list[SimRequest] = []
        self.hits = self.misses = self.evictions = self.preemptions = 0
        self.batches = 0
        self.batch_sizes = 0
        self.peak_blocks = 0
        self.peak_waiting = 0
        self.started = time.perf_counter()
        self.tokens = 0
        self.bound = dict.fromkeys(BOUNDS, 0)  # decode steps each limit held the batch
        self._sent = 0
        self._bound = "clients"  # why the last admission stopped
        self.on_finish: Any = None
        #: Told the batch's fill (0..1) at each step: the simulated GPU's load.
        self.on_load: Any = None

    # ---- the state the engine reports through observe_engine() ---------------------

    def scheduler_stats(self) -> SchedulerStats:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        waits = [r.token_times[0] - r.arrived for r in self.done if r.token_times]
        return SchedulerStats(
            waiting_requests=len(self.waiting),
            running_requests=len(self.running),
            preempted_requests=sum(1 for r in self.waiting if r.preemptions),
            completed_requests=len(self.done),
            failed_requests=0,
            cancelled_requests=0,
            avg_wait_time_ms=1e3 * sum(waits) / len(waits) if waits else 0.0,
            avg_execution_time_ms=1e3 * sum(r.finished - r.arrived for r in self.done) / len(self.done)
            if self.done
            else 0.0,
            throughput_rps=len(self.done) / elapsed,
            queue_utilization=100.0 * len(self.waiting) / max(self.c.requests, 1),
        )

    def cache_stats(self) -> CacheStats:
        lookups = self.hits + self.misses
        used = self.c.kv_blocks - self.free_blocks
        return CacheStats(
            total_blocks=self.c.kv_blocks,
            used_blocks=used,
            free_blocks=self.free_blocks,
            cache_hit_rate=self.hits / lookups if lookups else 0.0,
            cache_hits=self.hits,
            cache_misses=self.misses,
            eviction_count=self.evictions,
            avg_block_utilization=self._block_fill(),
            prefix_cache_stats=PrefixCacheStats(
                cached_prefixes=len(self.cached_prefixes),
                prefix_hit_rate=self.hits / lookups if lookups else 0.0,
                avg_prefix_length=sum(r.prefix_tokens for r in self.done) / len(self.done) if self.done else 0.0,
                memory_saved_bytes=self.hits * 2 * 32 * 8 * 128 * 2 * 64,
            ),
        )

    def batching_metrics(self) -> BatchingMetrics:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        avg = self.batch_sizes / self.batches if self.batches else 0.0
        return BatchingMetrics(
            avg_batch_size=avg,
            batch_utilization=avg / self.c.max_batch,
            batches_created=self.batches,
            batches_completed=self.batches,
            avg_batch_time_ms=1e3 * self.c.step_s,
            tokens_per_second=self.tokens / elapsed,
        )

    def _block_fill(self) -> float:
        tokens = sum(r.prompt_tokens + r.generated for r in self.running)
        blocks = sum(r.blocks for r in self.running)
        return tokens / (blocks * BLOCK_TOKENS) if blocks else 0.0

    # ---- serving ------------------------------------------------------------------

    def _new_request(self, i: int) -> SimRequest:
        prefix = self.rng.randrange(PREFIXES)
        max_tokens = self.rng.choice((48, 64, 128))
        return SimRequest(
            index=i,
            prompt_tokens=self.rng.randint(96, 640),
            output_tokens=min(self.rng.randint(16, 96), max_tokens),
            max_tokens=max_tokens,
            prefix=prefix,
            prefix_tokens=64 * (prefix + 1),
        )

    def _blocks_for(self, tokens: int) -> int:
        return math.ceil(tokens / BLOCK_TOKENS)

    async def _client_loop(self) -> None:
        """One client: send a request, read its stream to the end, send the next."""
        while self._sent < self.c.requests:
            i = self._sent
            self._sent += 1
            req = self._new_request(i)
            req.arrived = time.perf_counter()
            req.queue = asyncio.Queue()
            req.tracker = ferrum_otel.request(
                model=MODEL,
                request_id=f"demo-{i:04d}",
                client_id=f"tenant-{i % 3}",
                input_tokens=req.prompt_tokens,
                max_tokens=req.max_tokens,
                temperature=0.7,
                stream=True,
            )
            req.mark("queue", req.arrived)
            self.waiting.append(req)
            self.peak_waiting = max(self.peak_waiting, len(self.waiting))
            while (token := await req.queue.get()) is not None:
                req.token_times.append(token)
            # A client thinks a little before its next request (seeded, 0-20 ms).
            await asyncio.sleep(self.rng.uniform(0.0, 0.02))

    def _admit(self, now: float) -> float:
        """Move waiting requests into the batch while blocks allow; returns prefill time."""
        prefill_s = 0.0
        self._bound = "clients"
        while self.waiting:
            if len(self.running) >= self.c.max_batch:
                self._bound = "max batch"
                break
            req = self.waiting[0]
            need = self._blocks_for(req.prompt_tokens + req.generated + 1)
            if need > self.free_blocks:
                self._bound = "KV cache"
                break
            self.waiting.pop(0)
            self.free_blocks -= need
            req.blocks = need
            req.mark("prefill", now + prefill_s)
            req.prefix_hit = req.prefix in self.cached_prefixes
            if req.prefix_hit:
                self.hits += 1
            else:
                self.misses += 1
                self.cached_prefixes.add(req.prefix)
            uncached = req.prompt_tokens + req.generated - (req.prefix_tokens if req.prefix_hit else 0)
            prefill_s += self.c.prefill_s_per_token * max(uncached, 1)
            self.running.append(req)
        self.peak_blocks = max(self.peak_blocks, self.c.kv_blocks - self.free_blocks)
        return prefill_s

    def _preempt_for(self, req: SimRequest) -> bool:
        """Free blocks for ``req`` by preempting the newest other request; False if none."""
        victims = [r for r in self.running if r is not req]
        if not victims:
            return False
        victim = victims[-1]
        self.running.remove(victim)
        self.free_blocks += victim.blocks
        victim.blocks = 0
        victim.preemptions += 1
        self.preemptions += 1
        self.evictions += 1
        victim.tracker.preempted()
        victim.mark("queue", time.perf_counter())
        self.waiting.insert(0, victim)
        return True

    def _emit_token(self, req: SimRequest, now: float) -> None:
        req.generated += 1
        self.tokens += 1
        req.tracker.token()
        assert req.queue is not None
        req.queue.put_nowait(now)
        if req.generated >= req.output_tokens:
            self._finish(req, now)

    async def run(self) -> list[SimRequest]:
        self.started = time.perf_counter()
        loop = asyncio.get_running_loop()
        clients = [loop.create_task(self._client_loop()) for _ in range(min(self.c.concurrency, self.c.requests))]
        await asyncio.sleep(0)  # the clients send their first requests
        while len(self.done) < self.c.requests:
            now = time.perf_counter()
            prefill_s = self._admit(now)
            if prefill_s:
                await asyncio.sleep(prefill_s)
                now = time.perf_counter()
                for req in [r for r in self.running if r.marks[-1][0] == "prefill"]:
                    self._emit_token(req, now)  # the prefill step produces the first token
                    if req in self.running:
                        req.mark("decode", now)
            if not self.running:
                if self.on_load is not None:
                    self.on_load(0.0)
                await asyncio.sleep(self.c.step_s / 2)
                continue
            if self.on_load is not None:
                self.on_load(len(self.running) / self.c.max_batch)  # the simulated GPU's power draw
            await asyncio.sleep(self.c.step_s)
            self.batches += 1
            self.batch_sizes += len(self.running)
            self.bound[self._bound] += 1
            now = time.perf_counter()
            for req in list(self.running):
                if req not in self.running:
                    continue  # preempted earlier in this step
                need = self._blocks_for(req.prompt_tokens + req.generated + 1)
                while need > req.blocks and self.free_blocks == 0:
                    if not self._preempt_for(req):
                        break
                if need > req.blocks and self.free_blocks:
                    self.free_blocks -= 1
                    req.blocks += 1
                if need > req.blocks:
                    continue
                self._emit_token(req, now)
            self.peak_blocks = max(self.peak_blocks, self.c.kv_blocks - self.free_blocks)
        await asyncio.gather(*clients)
        await asyncio.sleep(0)  # let the clients read their end-of-stream markers
        return sorted(self.done, key=lambda r: r.index)

    def _finish(self, req: SimRequest, now: float) -> None:
        self.running.remove(req)
        self.free_blocks += req.blocks
        req.blocks = 0
        req.finished = now
        req.tracker.set_output_tokens(req.generated)
        req.tracker.finish("length" if req.generated >= req.max_tokens else "stop")
        assert req.queue is not None
        req.queue.put_nowait(None)
        self.done.append(req)
        if self.on_finish is not None:
            self.on_finish(len(self.done), self.c.requests)
