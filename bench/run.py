"""Benchmarks for cjm_workers against a raw multiprocessing.Pipe and concurrent.futures.ProcessPoolExecutor,
measured in one run on the same machine. Prints a markdown table; ratios matter more than absolute times."""
import asyncio, json, multiprocessing as mp, os, pathlib, signal, statistics, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor
from typing import Optional

from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import AsyncDemoJobManager, DemoJobManager
from cjm_workers.managers.runs import SOLO_PREFETCH

N_SEQ, N_BURST, N_CHUNKS, N_REPEAT = 4000, 1000, 10_000, 5
N_BURSTS = 5  # bursts of each kind; the median is shown (the reference's too: bench/reference_baseline.py)
N_ROUNDS = 3  # sets of N_BURSTS bursts, the reference's alternating with ours (see `alternating_bursts`)
REFERENCE = pathlib.Path(__file__).parent / 'reference_baseline.py'  # the reference library (seed 002), vendored in bench/reference/


def echo_server(conn):
    while True:
        msg = conn.recv()
        if msg is None: return
        conn.send(msg)


def noop(): return {}


def pct(xs, p): return sorted(xs)[min(len(xs) - 1, int(len(xs) * p))]


class RawPipe:
    "The baseline: a spawn process echoing pickled messages over a multiprocessing.Pipe, blocking on both ends."
    def __init__(self):
        ctx = mp.get_context('spawn')
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=echo_server, args=(child,)); self.proc.start()
        self.msg = {'type': 'execute', 'job_id': 'x' * 32, 'params': {}}
    def round_trips(self, n):
        ts = []
        for _ in range(n):
            t = time.perf_counter(); self.conn.send(self.msg); self.conn.recv(); ts.append(time.perf_counter() - t)
        return ts
    def close(self): self.conn.send(None); self.proc.join()


def pool_executor():
    with ProcessPoolExecutor(1, mp_context=mp.get_context('spawn')) as ex:
        for _ in range(200): ex.submit(noop).result()
        ts = []
        for _ in range(N_SEQ):
            t = time.perf_counter(); ex.submit(noop).result(); ts.append(time.perf_counter() - t)
        rates = []
        for _ in range(N_BURSTS):
            t = time.perf_counter()
            for f in [ex.submit(noop) for _ in range(N_BURST)]: f.result()
            rates.append(N_BURST / (time.perf_counter() - t))
    return ts, statistics.median(rates)


async def cjm():
    out = {}
    t = time.perf_counter()
    m = DemoJobManager(worker_config=WorkerConfig(max_workers=1, cancel_grace_seconds=0.2, max_restart_attempts=100))
    first = await m.start_job('noop'); await m.wait_for_job(first.id)
    out['cold'] = time.perf_counter() - t
    # the same manager with its workers' idle spin turned off, to show what the spin buys
    m0 = DemoJobManager(worker_type="nospin", worker_config=WorkerConfig(max_workers=1, idle_spin_seconds=0))
    async def round_trips(mgr, n, into):
        for _ in range(n):
            t = time.perf_counter(); j = await mgr.start_job('noop'); await mgr.wait_for_job(j.id); into.append(time.perf_counter() - t)
    await round_trips(m, 200, []); await round_trips(m0, 200, [])
    # the baseline is measured in blocks interleaved with ours: all see the same machine, moment by moment
    raw = RawPipe()
    raw.round_trips(200)
    ts, ts0, base = [], [], []
    for _ in range(N_SEQ // 200):
        base += raw.round_trips(200)
        await round_trips(m, 200, ts)
        await round_trips(m0, 200, ts0)
    raw.close()
    await m0.shutdown()
    out['seq'], out['seq_nospin'], out['raw'] = ts, ts0, base
    out['burst'], out['ref_burst'], out['burst_cpu'], out['ref_burst_cpu'] = await alternating_bursts(m)
    rates = []
    for _ in range(N_REPEAT):
        t = time.perf_counter()
        j = await m.start_job('stream_n', n=N_CHUNKS)
        got = 0
        async for piece in m.stream_job(j.id): got += len(piece)
        assert got == N_CHUNKS
        rates.append(N_CHUNKS / (time.perf_counter() - t))
    out['stream'] = statistics.median(rates)
    coop, kill, crash = [], [], []
    for _ in range(N_REPEAT):
        j = await m.start_job('sleep', seconds=30)
        while j.status != 'running': await asyncio.sleep(0.001)
        t = time.perf_counter(); await m.cancel_job(j.id)
        n = await m.start_job('noop'); await m.wait_for_job(n.id); coop.append(time.perf_counter() - t)
        j = await m.start_job('stubborn', seconds=30, looks=True)
        while j.status != 'running': await asyncio.sleep(0.001)
        await asyncio.sleep(0.002)  # it looks at its cancellation state once, right after it starts
        t = time.perf_counter(); await m.cancel_job(j.id)
        n = await m.start_job('noop'); await m.wait_for_job(n.id); kill.append(time.perf_counter() - t - 0.2)
        j = await m.start_job('sleep', seconds=30)
        while j.status != 'running': await asyncio.sleep(0.001)
        t = time.perf_counter(); os.kill(j.worker_pid, signal.SIGKILL)
        await m.wait_for_job(j.id); crash.append(time.perf_counter() - t)
        n = await m.start_job('noop'); await m.wait_for_job(n.id)
    out['cancel_coop'], out['cancel_kill'], out['crash'] = statistics.median(coop), statistics.median(kill), statistics.median(crash)
    out['crash_max'] = max(crash)
    await m.shutdown()
    out.update(await cancel_ladder())
    for key, cfg in (('burst2', dict(max_workers=2)), ('burst_one', dict(max_workers=1, prefetch_jobs=1))):
        m2 = DemoJobManager(worker_type=key, worker_config=WorkerConfig(**cfg))
        await m2.start()
        out[key] = await bursts(m2)
        await m2.shutdown()
    return out


async def burst_rates(m, cpu:Optional[list]=None) -> list:
    """The rates of N_BURSTS bursts of N_BURST no-op jobs, all submitted, then each awaited; with `cpu`, the CPU time
    per job (µs) this process used in each burst, all its threads, is appended to it."""
    rates = []
    for _ in range(N_BURSTS):
        c, t = time.process_time(), time.perf_counter()
        jobs = [await m.start_job('noop') for _ in range(N_BURST)]
        for j in jobs: await m.wait_for_job(j.id)
        rates.append(N_BURST / (time.perf_counter() - t))
        if cpu is not None: cpu.append((time.process_time() - c) / N_BURST * 1e6)
    return rates


async def bursts(m): return statistics.median(await burst_rates(m))


async def alternating_bursts(m):
    """The median burst rates of `m` and of the reference library, each over N_ROUNDS sets of N_BURSTS bursts, the
    reference's sets (in a process of its own, its manager kept warm between them) alternating with ours: this machine
    is shared and changes pace from one second to the next, and alternating lets the changes fall on both alike."""
    ref = await asyncio.create_subprocess_exec(sys.executable, str(REFERENCE), '--bursts', stdin=asyncio.subprocess.PIPE,
                                               stdout=asyncio.subprocess.PIPE)
    ours, theirs, our_cpu, their_cpu = [], [], [], []
    try:
        for _ in range(N_ROUNDS):
            ref.stdin.write(b'go\n')
            await ref.stdin.drain()
            while True:  # its rates and CPU times: a JSON object on a line of its own
                line = await asyncio.wait_for(ref.stdout.readline(), 300)
                if not line: raise RuntimeError("the reference's burst process ended early")
                if line.startswith(b'{'): break
            got = json.loads(line)
            theirs += got['rates']
            their_cpu += got['cpu']
            ours += await burst_rates(m, our_cpu)
    finally:
        if ref.returncode is None:
            ref.stdin.close()
            try: await asyncio.wait_for(ref.wait(), 30)
            except asyncio.TimeoutError: ref.kill(); await ref.wait()
    return statistics.median(ours), statistics.median(theirs), statistics.median(our_cpu), statistics.median(their_cpu)


async def started(j):
    while j.status != 'running': await asyncio.sleep(0.0005)


async def cancel_ladder():
    "The rungs of the cancel ladder for plugins that never check, with a 5 s grace period that none of them waits for."
    out = {}
    for spare, method in ((0, 'forkserver'), (0, 'spawn'), (1, 'forkserver')):  # spawn: the baseline of the same run
        m = DemoJobManager(worker_type=f"blind{spare}{method}", worker_config=WorkerConfig(
            cancel_grace_seconds=5.0, spare_workers=spare, max_restart_attempts=100, start_method=method))
        await m.start()
        ts, ready = [], []
        for _ in range(N_REPEAT):
            j = await m.start_job('stubborn', seconds=30)
            await started(j)
            t = time.perf_counter(); await m.cancel_job(j.id)
            n = await m.start_job('noop'); await m.wait_for_job(n.id); ts.append(time.perf_counter() - t)
            assert j.status == 'cancelled'
            if spare: continue
            old = m.pool.slots[0].handle  # a worker killed while idle: until its replacement is ready for jobs
            t = time.perf_counter(); os.kill(old.pid, signal.SIGKILL)
            while m.pool.slots[0].handle in (None, old) or m.pool.slots[0].handle.state != 'idle': await asyncio.sleep(0.0005)
            ready.append(time.perf_counter() - t)
        out[f'blind_spare{spare}_{method}'] = statistics.median(ts)
        if ready: out[f'ready_{method}'] = statistics.median(ready)
        await m.shutdown()
    m = DemoJobManager(worker_type="drip", worker_config=WorkerConfig(cancel_grace_seconds=5.0))
    ts, same = [], True
    for _ in range(N_REPEAT):
        j = await m.start_job('drip', count=10_000, interval=DRIP)
        while len(j.output) < 8: await asyncio.sleep(0.001)
        t = time.perf_counter(); await m.cancel_job(j.id); ts.append(time.perf_counter() - t)
        n = await m.start_job('noop'); await m.wait_for_job(n.id)
        same = same and n.worker_pid == j.worker_pid and j.status == 'cancelled'
    out['drip'], out['drip_same'] = statistics.median(ts), same
    await m.shutdown()
    m = AsyncDemoJobManager(worker_config=WorkerConfig(cancel_grace_seconds=5.0))
    ts, same = [], True
    for _ in range(N_REPEAT):
        j = await m.start_job('async_sleep', seconds=60)
        await started(j)
        t = time.perf_counter(); await m.cancel_job(j.id); ts.append(time.perf_counter() - t)
        n = await m.start_job('async_echo'); await m.wait_for_job(n.id)
        same = same and n.worker_pid == j.worker_pid and j.status == 'cancelled'
    out['async'], out['async_same'] = statistics.median(ts), same
    await m.shutdown()
    return out


DRIP = 0.05  # seconds between the chunks of the stream that never checks


def main():
    us = lambda s: f"{s * 1e6:.0f} µs"
    pool_seq, pool_burst = pool_executor()
    # the reference library (seed 002, vendored in bench/reference/), in a process of its own, in the same run
    ref = subprocess.run([sys.executable, str(REFERENCE)], capture_output=True, text=True, timeout=600)
    ref = json.loads(ref.stdout.strip().splitlines()[-1]) if ref.returncode == 0 else None
    c = asyncio.run(cjm())
    raw = c['raw']
    raw_med = statistics.median(raw)
    rows = [
        ("raw Pipe round trip (baseline, interleaved with the next row): median / p99", f"{us(raw_med)} / {us(pct(raw, .99))}", ""),
        ("ProcessPoolExecutor no-op round trip: median / p99", f"{us(statistics.median(pool_seq))} / {us(pct(pool_seq, .99))}", ""),
        ("cjm_workers no-op job round trip: median / p99", f"{us(statistics.median(c['seq']))} / {us(pct(c['seq'], .99))}",
         f"{statistics.median(c['seq']) / raw_med:.2f}× raw Pipe (target ≤ 2×)"),
        ("the same with `idle_spin_seconds=0` (workers sleep at once after a job)", f"{us(statistics.median(c['seq_nospin']))} / {us(pct(c['seq_nospin'], .99))}",
         f"{statistics.median(c['seq_nospin']) / raw_med:.2f}× raw Pipe"),
        (f"ProcessPoolExecutor, {N_BURST} no-op jobs at once (median of {N_BURSTS}, as each burst row)", f"{pool_burst:,.0f} jobs/s", ""),
        (f"cjm_workers, {N_BURST} no-op jobs at once, 1 worker (it holds up to {SOLO_PREFETCH} ahead; median of {N_ROUNDS * N_BURSTS}, "
         "in sets alternating with the reference's)", f"{c['burst']:,.0f} jobs/s",
         f"{c['burst'] / pool_burst:.2f}× ProcessPoolExecutor (target ≥ 2×)"),
        ("the same with `prefetch_jobs=1` (one held)", f"{c['burst_one']:,.0f} jobs/s", f"{c['burst_one'] / pool_burst:.2f}× ProcessPoolExecutor"),
        (f"cjm_workers, {N_BURST} no-op jobs at once, 2 workers (one held each)", f"{c['burst2']:,.0f} jobs/s", ""),
        (f"reference library (seed 002), {N_BURST} no-op jobs at once, its 1 worker (median of {N_ROUNDS * N_BURSTS}, alternating)",
         f"{c['ref_burst']:,.0f} jobs/s", f"cjm_workers (1 worker) {c['burst'] / c['ref_burst']:.2f}× the reference (target ≥ 2×)"),
        ("the web process's CPU time per job in those bursts (all its threads): cjm_workers / the reference",
         f"{c['burst_cpu']:.0f} µs / {c['ref_burst_cpu']:.0f} µs",
         f"the reference uses {c['ref_burst_cpu'] / c['burst_cpu']:.2f}× as much (each web process runs its bursts on about one core)"),
        (f"{N_CHUNKS:,}-chunk stream delivered to a subscriber", f"{c['stream']:,.0f} chunks/s", "target ≥ 200,000"),
        ("cancel (plugin stops) → next job completes", f"{c['cancel_coop'] * 1e3:.1f} ms", "worker kept"),
        ("cancel (plugin looked once, then ignores it) → next job completes, minus 0.2 s grace", f"{c['cancel_kill'] * 1e3:.1f} ms", "kill + respawn"),
        ("cancel (plugin never checks) → next job completes", f"{c['blind_spare0_forkserver'] * 1e3:.1f} ms",
         "killed at once (grace 5 s not waited); a new worker from the fork server; target ≤ 50 ms"),
        ("the same with `start_method='spawn'` (baseline, same run)", f"{c['blind_spare0_spawn'] * 1e3:.1f} ms",
         f"fork server {c['blind_spare0_spawn'] / c['blind_spare0_forkserver']:.1f}× faster"),
        ("the same in the reference library (seed 002: it terminates its worker and forks the web process anew)",
         f"{ref['cancel_blind'] * 1e3:.1f} ms" if ref else "failed",
         f"cjm_workers {ref['cancel_blind'] / c['blind_spare0_forkserver']:.1f}× faster (target ≥ 3×)" if ref else ""),
        ("the same with `spare_workers=1`", f"{c['blind_spare1_forkserver'] * 1e3:.1f} ms", "a ready spare takes over"),
        ("idle worker SIGKILLed → its replacement ready (plugin load excluded)", f"{c['ready_forkserver'] * 1e3:.1f} ms",
         "forked from the preloaded fork server; target ≤ 30 ms"),
        ("the same with `start_method='spawn'` (baseline, same run)", f"{c['ready_spawn'] * 1e3:.1f} ms",
         f"fork server {c['ready_spawn'] / c['ready_forkserver']:.1f}× faster"),
        (f"cancel of a stream that never checks ({DRIP * 1e3:.0f} ms between chunks) → job cancelled", f"{c['drip'] * 1e3:.1f} ms",
         f"target ≤ {DRIP * 1e3 + 5:.0f} ms; {'same worker' if c['drip_same'] else 'WORKER REPLACED'}"),
        ("cancel of an async plugin awaiting a 60 s sleep → job cancelled", f"{c['async'] * 1e3:.1f} ms",
         f"target < 50 ms; {'same worker' if c['async_same'] else 'WORKER REPLACED'}"),
        ("worker SIGKILL → job marked failed: median / max", f"{c['crash'] * 1e3:.2f} / {c['crash_max'] * 1e3:.2f} ms", "target < 50 ms"),
        ("cold start: first job, the fork server's start included", f"{c['cold'] * 1e3:.0f} ms", ""),
        ("the same in the reference library (a forked worker)", f"{ref['cold'] * 1e3:.0f} ms" if ref else "failed", ""),
    ]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print("| figure | value | note |\n|---|---|---|")
    for r in rows: print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == '__main__':
    main()
