"""Journal benchmarks: sustained burst throughput of no-op jobs with the SQLite journal on and off (interleaved,
one run; with the journal, a phase ends when its last transition is written),
and history queries on a journal of 100,000 jobs. Prints markdown."""
import asyncio, gc, logging, os, statistics, sys, tempfile, time

import psutil

from cjm_workers.core.config import WorkerConfig
from cjm_workers.core.store import SQLiteJobStore
from cjm_workers.demo.plugins import DemoJobManager

N_BURST, PHASE, N_REPEAT, N_HISTORY, BIG_BURST = 1000, 5, 5, 100_000, 10_000


class RowsOnlyStore(SQLiteJobStore):
    "Diagnostic: builds each batch's statements as the SQLite store does, then stores nothing; SQLite's CPU taken away."
    def write(self, owner, jobs, queued, outputs):
        for _ in self._job_statements(owner, jobs, queued): pass


async def phase(m):
    "Jobs/s over PHASE bursts of N_BURST no-op jobs back to back; with a journal, until its last write is done."
    # the same starting point every time: finished jobs out of memory (not out of the journal), a fresh GC
    for k in [k for k, j in m.jobs.items() if j.is_terminal]: del m.jobs[k]
    gc.collect()
    t = time.perf_counter()
    for _ in range(PHASE):
        jobs = [await m.start_job('noop') for _ in range(N_BURST)]
        for j in jobs: await m.wait_for_job(j.id)
    await m.flush_journal(60)  # counted: sustained throughput includes the journal keeping up
    return PHASE * N_BURST / (time.perf_counter() - t)


def cpu_seconds(procs): return sum(sum(p.cpu_times()[:2]) for p in procs)


async def single_burst(m, count=BIG_BURST, plugin='noop', cpu=None, **params):
    "Jobs/s for one burst of `count` jobs, until the last job completes (the journal still writing behind)."
    for k in [k for k, j in m.jobs.items() if j.is_terminal]: del m.jobs[k]
    gc.collect()
    app, workers = psutil.Process(), [psutil.Process(w['pid']) for w in m.health()['workers'] if w['pid']]
    c_app, c_workers = cpu_seconds([app]), cpu_seconds(workers)
    t = time.perf_counter()
    jobs = [await m.start_job(plugin, **params) for _ in range(count)]
    for j in jobs: await m.wait_for_job(j.id)
    rate = count / (time.perf_counter() - t)
    await m.flush_journal(60)  # not counted, but done before anything else is timed
    if cpu is not None:  # CPU µs per job, the journal's writing included: the app process, and its workers
        cpu.append(((cpu_seconds([app]) - c_app) / count * 1e6, (cpu_seconds(workers) - c_workers) / count * 1e6))
    return rate


async def throughput(workers):
    d = tempfile.mkdtemp()
    off = DemoJobManager('off', worker_config=WorkerConfig(max_workers=workers))
    on = DemoJobManager('on', worker_config=WorkerConfig(max_workers=workers), job_store=f"{d}/jobs.db")
    await asyncio.gather(off.start(), on.start())
    await phase(off); await phase(on)
    r_off, r_on = [], []
    for i in range(N_REPEAT):  # interleaved, each first in turn, so both see the same machine
        for m in ((off, on) if i % 2 else (on, off)): (r_off if m is off else r_on).append(await phase(m))
    rows = DemoJobManager('rows', worker_config=WorkerConfig(max_workers=workers), job_store=RowsOnlyStore(f"{d}/rows.db"))
    await rows.start()
    await single_burst(rows)
    bursts, cpu = {off: [], on: [], rows: []}, {off: [], on: [], rows: []}
    for i in range(N_REPEAT):  # each of the three first in turn
        for m in (off, on, rows)[i % 3:] + (off, on, rows)[:i % 3]: bursts[m].append(await single_burst(m, cpu=cpu[m]))
    await rows.shutdown()
    b_off, b_on, b_rows = bursts[off], bursts[on], bursts[rows]
    written = on.health()['journal']['rows_written']
    c_off, c_on = [], []
    if workers == 1:  # short CPU-bound jobs that report progress: count_primes to 3,000 (~0.3 ms, 50 reports)
        for i in range(N_REPEAT):
            for m in ((off, on) if i % 2 else (on, off)):
                (c_off if m is off else c_on).append(await single_burst(m, 3000, 'count_primes', n=3000))
    await asyncio.gather(off.shutdown(), on.shutdown())
    cpu = {k: tuple(statistics.median(x[i] for x in v) for i in (0, 1)) for k, v in cpu.items()}
    return (statistics.median(r_off), statistics.median(r_on), written, statistics.median(b_off), statistics.median(b_on),
            c_off and statistics.median(c_off), c_on and statistics.median(c_on), cpu[off], cpu[on],
            statistics.median(b_rows), cpu[rows])


def history():
    d = tempfile.mkdtemp()
    store = SQLiteJobStore(f"{d}/jobs.db")
    store.open('demo')
    plugins, statuses = ['echo', 'transcribe', 'generate', 'resize'], ['completed'] * 8 + ['failed', 'cancelled']
    t0 = 1_790_000_000
    def iso(s): return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(s)) + '.000000+00:00'
    t = time.perf_counter()
    for start in range(0, N_HISTORY, 5000):
        jobs = [{'id': f'job{i:06d}', 'plugin_id': plugins[i % 4], 'status': statuses[i % 10], 'priority': 0,
                 'created_at': iso(t0 + i), 'started_at': iso(t0 + i), 'completed_at': iso(t0 + i + 1), 'error': None,
                 'worker_pid': 1000, 'attempt': 1, 'result': {'text': 'x' * 50}}
                for i in range(start, start + 5000)]
        requests = {j['id']: (j['plugin_id'], b'x' * 100, [], None) for j in jobs}
        store.write('demo', jobs, requests, [(f'job{i:06d}', False, 'streamed text ' * 5) for i in range(start, start + 5000, 10)])
    fill = time.perf_counter() - t
    def timed(f, n=20):
        ts = []
        for _ in range(n):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        return statistics.median(ts)
    mid = iso(t0 + N_HISTORY // 2)
    out = {
        'newest page of 50 (and the total)': timed(lambda: store.list('demo', limit=50)),
        'status = failed, page of 50': timed(lambda: store.list('demo', status=['failed'], limit=50)),
        'plugin = transcribe, page 100 of 50': timed(lambda: store.list('demo', plugin_id='transcribe', limit=50, offset=5000)),
        'time range (1 hour), page of 50': timed(lambda: store.list('demo', since=mid, until=iso(t0 + N_HISTORY // 2 + 3600), limit=50)),
        'one job by id, with its output': timed(lambda: store.get('demo', 'job050000'), 200),
    }
    store.close('demo')
    return fill, out


async def main():
    off1, on1, written1, boff1, bon1, coff, con, cpu_off1, cpu_on1, brows1, cpu_rows1 = await throughput(1)
    off2, on2, written2, boff2, bon2, _, _, cpu_off2, cpu_on2, brows2, cpu_rows2 = await throughput(2)
    fill, hist = history()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; SQLite journal in WAL mode, flushed every 50 ms\n")
    print("| figure | journal off | journal on | cost |\n|---|---|---|---|")
    for n, off, on, written in ((1, off1, on1, written1), (2, off2, on2, written2)):
        print(f"| bursts of {N_BURST} no-op jobs, {PHASE} back to back, {n} worker{'s' * (n > 1)}, median of {N_REPEAT} | "
              f"{off:,.0f} jobs/s | {on:,.0f} jobs/s | {(1 - on / off) * 100:.0f}% (target ≤ 20%); "
              f"{written:,} rows written |")
    for n, off, on in ((1, boff1, bon1), (2, boff2, bon2)):
        print(f"| one burst of {BIG_BURST:,} no-op jobs until they complete (the journal writing behind), {n} worker{'s' * (n > 1)}, "
              f"median of {N_REPEAT} | {off:,.0f} jobs/s | {on:,.0f} jobs/s | {(1 - on / off) * 100:.0f}% (target ≤ 20%) |")
    for n, off, rows in ((1, boff1, brows1), (2, boff2, brows2)):
        print(f"| diagnostic: the same burst, {n} worker{'s' * (n > 1)}, with a journal that builds its rows but does not store "
              f"them (its work under the GIL, without SQLite's) | {off:,.0f} jobs/s | {rows:,.0f} jobs/s | {(1 - rows / off) * 100:.0f}% |")
    print(f"| one burst of 3,000 short CPU jobs (count_primes to 3,000: ~0.3 ms, 50 progress reports each), 1 worker, "
          f"median of {N_REPEAT} | {coff:,.0f} jobs/s | {con:,.0f} jobs/s | {(1 - con / coff) * 100:.0f}% |")
    print(f"\nCPU per job in the {BIG_BURST:,}-job bursts (medians), the journal's writing included; the cost a CPU-bound "
          "machine cannot hide is the journal's extra CPU over the whole:\n")
    print("| workers | journal off: app + workers | journal on: app + workers | extra CPU per job | its share of the whole "
          "| extra CPU, rows built but not stored |\n|---|---|---|---|---|---|")
    for n, (a0, w0), (a1, w1), (a2, w2) in ((1, cpu_off1, cpu_on1, cpu_rows1), (2, cpu_off2, cpu_on2, cpu_rows2)):
        print(f"| {n} | {a0:.0f} + {w0:.0f} µs | {a1:.0f} + {w1:.0f} µs | {a1 + w1 - a0 - w0:.0f} µs | "
              f"{(1 - (a0 + w0) / (a1 + w1)) * 100:.0f}% | {a2 + w2 - a0 - w0:.0f} µs |")
    print(f"\nHistory on a journal of {N_HISTORY:,} jobs (filled in {fill:.1f} s); median query times:\n")
    print("| query | time |\n|---|---|")
    for k, v in hist.items(): print(f"| {k} | {v * 1e3:.2f} ms |")


if __name__ == '__main__':
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main())
