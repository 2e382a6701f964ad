"""Scheduling benchmarks: short jobs' waits behind long ones with and without priorities (2 workers, one GPU slot),
and the time from a worker's SIGKILL to the next job starting, with and without a warm spare. Prints markdown."""
import asyncio, logging, os, random, signal, statistics, sys, time
from datetime import datetime

from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager

N_SHORT, N_LONG, SHORT_S, LONG_S, N_KILL = 200, 20, 0.005, 0.2, 7


def pct(xs, p): return sorted(xs)[min(len(xs) - 1, int(len(xs) * p))]
def epoch(iso): return datetime.fromisoformat(iso).timestamp()


async def mix(priorities:bool):
    "Short and long GPU jobs arriving at random (same sequence every run); the short jobs' waits in seconds."
    m = DemoJobManager(worker_config=WorkerConfig(max_workers=2), resources={'gpu': 1}, plugin_resources={'sleep': {'gpu': 1}})
    await m.start()
    rnd = random.Random(42)
    kinds = ['long'] * N_LONG + ['short'] * N_SHORT
    rnd.shuffle(kinds)
    busy = N_SHORT * SHORT_S + N_LONG * LONG_S
    gap = busy / len(kinds) / 0.9  # arrivals keep the GPU ~90% busy
    shorts, longs = [], []
    for kind in kinds:
        short = kind == 'short'
        j = await m.start_job('sleep', seconds=SHORT_S if short else LONG_S, priority=1 if (short and priorities) else 0)
        (shorts if short else longs).append(j)
        await asyncio.sleep(rnd.expovariate(1 / gap))
    for j in shorts + longs: await m.wait_for_job(j.id, 120)
    await m.shutdown()
    waits = [epoch(j.started_at) - epoch(j.created_at) for j in shorts]
    long_waits = [epoch(j.started_at) - epoch(j.created_at) for j in longs]
    return waits, long_waits


async def kill_to_next(spare:bool):
    "Seconds from SIGKILL of a busy worker to the next queued job starting."
    # crash_loop_deaths=0: these kills are the bench's own, not a plugin killing its workers (whose jobs would be refused)
    m = DemoJobManager(worker_config=WorkerConfig(max_workers=1, spare_workers=1 if spare else 0, max_restart_attempts=100,
                                                  crash_loop_deaths=0))
    await m.start()
    out = []
    for _ in range(N_KILL):
        if spare:  # wait until a spare is ready again
            while not any(w['spare'] and w['state'] == 'RUNNING' for w in m.health()['workers']): await asyncio.sleep(0.01)
        j = await m.start_job('sleep', seconds=30)
        while j.status != 'running': await asyncio.sleep(0.001)
        nxt = await m.start_job('noop')
        t = time.time()
        os.kill(j.worker_pid, signal.SIGKILL)
        await m.wait_for_job(nxt.id, 30)
        assert nxt.status == 'completed', nxt.error
        out.append(epoch(nxt.started_at) - t)
    await m.shutdown()
    return out


async def main():
    ms = lambda s: f"{s * 1e3:.0f} ms"
    fifo, fifo_long = await mix(False)
    prio, prio_long = await mix(True)
    cold, warm = await kill_to_next(False), await kill_to_next(True)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {N_SHORT} short ({SHORT_S * 1e3:g} ms) and {N_LONG} long "
          f"({LONG_S * 1e3:g} ms) jobs on 2 workers sharing one GPU slot, arriving at random to keep it ~90% busy\n")
    print("| figure | without | with | note |\n|---|---|---|---|")
    print(f"| short jobs' wait, p50 (priorities) | {ms(statistics.median(fifo))} | {ms(statistics.median(prio))} | short jobs get priority 1 |")
    print(f"| short jobs' wait, p99 (priorities) | {ms(pct(fifo, .99))} | {ms(pct(prio, .99))} | |")
    print(f"| long jobs' wait, p50 (priorities) | {ms(statistics.median(fifo_long))} | {ms(statistics.median(prio_long))} | the price |")
    print(f"| worker SIGKILL → next job starts, median of {N_KILL} (warm spare) | {ms(statistics.median(cold))} | "
          f"{ms(statistics.median(warm))} | `spare_workers=1` |")


if __name__ == '__main__':
    logging.basicConfig(level=logging.ERROR)  # the deliberate SIGKILLs are logged as warnings
    asyncio.run(main())
