"""What durable_start costs: the no-op round trip and a burst's throughput with the SQLite journal, at-least-once
(default) against at-most-once (`durable_start=True`), measured interleaved in one run. Prints markdown."""
import asyncio, gc, os, statistics, sys, tempfile, time

from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager

N_SEQ, BLOCK, N_BURST, N_REPEAT = 2000, 200, 2000, 5


async def round_trips(m, n, into):
    for _ in range(n):
        t = time.perf_counter(); j = await m.start_job('noop'); await m.wait_for_job(j.id); into.append(time.perf_counter() - t)


async def burst(m):
    for k in [k for k, j in m.jobs.items() if j.is_terminal]: del m.jobs[k]
    gc.collect()
    t = time.perf_counter()
    jobs = [await m.start_job('noop') for _ in range(N_BURST)]
    for j in jobs: await m.wait_for_job(j.id)
    rate = N_BURST / (time.perf_counter() - t)
    await m.flush_journal(60)
    return rate


async def main():
    d = tempfile.mkdtemp()
    default = DemoJobManager('default', worker_config=WorkerConfig(max_workers=1), job_store=f"{d}/a.db")
    durable = DemoJobManager('durable', worker_config=WorkerConfig(max_workers=1), job_store=f"{d}/b.db", durable_start=True)
    await asyncio.gather(default.start(), durable.start())
    await round_trips(default, 200, []); await round_trips(durable, 200, [])
    rt = {'default': [], 'durable': []}
    for _ in range(N_SEQ // BLOCK):  # interleaved blocks: both see the same machine, moment by moment
        await round_trips(default, BLOCK, rt['default'])
        await round_trips(durable, BLOCK, rt['durable'])
    rates = {'default': [], 'durable': []}
    for i in range(N_REPEAT):
        for name, m in ((('default', default), ('durable', durable)) if i % 2 == 0 else (('durable', durable), ('default', default))):
            rates[name].append(await burst(m))
    await asyncio.gather(default.shutdown(), durable.shutdown())
    med = {k: statistics.median(v) for k, v in rt.items()}
    p99 = {k: sorted(v)[int(len(v) * .99)] for k, v in rt.items()}
    br = {k: statistics.median(v) for k, v in rates.items()}
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; SQLite journal (WAL, synchronous=NORMAL), 1 worker\n")
    print("| figure | at-least-once (default) | at-most-once (`durable_start=True`) | cost |\n|---|---|---|---|")
    print(f"| no-op round trip: median / p99 | {med['default'] * 1e6:.0f} / {p99['default'] * 1e6:.0f} µs | "
          f"{med['durable'] * 1e6:.0f} / {p99['durable'] * 1e6:.0f} µs | +{(med['durable'] - med['default']) * 1e6:.0f} µs at the median |")
    print(f"| {N_BURST:,} no-op jobs at once, median of {N_REPEAT} | {br['default']:,.0f} jobs/s | {br['durable']:,.0f} jobs/s | "
          f"{1 - br['durable'] / br['default']:.0%} |")

if __name__ == '__main__':
    asyncio.run(main())
