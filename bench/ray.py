"""Workers on Ray against workers on this machine, measured in one run (a local Ray on loopback: the settings of
../shared/notes/scale-out.md are set here before Ray is imported). Prints markdown.

- round trip: a no-op job submitted and awaited (target on Ray: median <= 5 ms);
- stream: 20,000 one-character chunks, delivered per second (target >= 100,000/s);
- cooperative cancel: from `cancel_job` to `cancelled`, for a job that checks (target <= 10 ms);
- crash detected: the worker process SIGKILLed (from here) until its job is `failed` (target <= 50 ms);
- replacement: from that kill until a job queued behind it has completed on a new worker (target <= local + 1.5 s)."""
import os, sys
# this file is named ray.py: its own folder must not shadow the `ray` package
sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') != os.path.dirname(os.path.abspath(__file__))]
from cjm_workers.backends.ray import keep_ray_on_loopback  # imports no Ray
keep_ray_on_loopback()  # before Ray is imported

import asyncio, logging, signal, statistics, time
logging.getLogger('cjm_workers').setLevel(logging.ERROR)  # the kills below are deliberate

from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager

N_NOOP, N_STREAM, N_CANCEL, N_CRASH, CHUNKS = 300, 5, 15, 5, 20_000


async def round_trip(m):
    t = time.perf_counter()
    await m.wait_for_job((await m.start_job('noop')).id, 60)
    return time.perf_counter() - t


async def stream(m):
    t = time.perf_counter()
    j = await m.start_job('stream_n', n=CHUNKS)
    n = 0
    async for piece in m.stream_job(j.id): n += len(piece)
    assert n == CHUNKS, n
    return CHUNKS / (time.perf_counter() - t)


async def running(m, job):
    while m.get_job(job.id).status != 'running': await asyncio.sleep(0.001)


async def cancel(m):
    j = await m.start_job('sleep', seconds=30)
    await running(m, j)
    t = time.perf_counter()
    assert await m.cancel_job(j.id)
    return time.perf_counter() - t


async def kill_under_a_job(m, kill, error):
    "(seconds until the job ended with `error`, seconds until a job queued behind it completed): `kill(m, job)` under a running job."
    j = await m.start_job('sleep', seconds=30)
    await running(m, j)
    after = await m.start_job('noop')
    t = time.perf_counter()
    await kill(m, m.get_job(j.id))
    failed = await m.wait_for_job(j.id, 60)
    detected = time.perf_counter() - t
    assert failed.status == 'failed' and error in failed.error, failed.error
    assert (await m.wait_for_job(after.id, 120)).status == 'completed'
    return detected, time.perf_counter() - t


async def sigkill_worker(m, job): os.kill(job.worker_pid, signal.SIGKILL)  # the worker killed from here: a crash


async def kill_agent(m, job):  # the agent actor killed: a new one (a new actor process) runs the next job
    import ray
    await asyncio.to_thread(ray.kill, m.pool.slots[0].handle.agent, no_restart=True)


def manager(name, backend):
    # one worker; restarts at once (the backoff is the same for both: the figure is the worker's start)
    return DemoJobManager(name, worker_backend=backend,
                          worker_config=WorkerConfig(max_workers=1, restart_backoff_base_seconds=0.001, restart_backoff_max_seconds=0.001,
                                                     crash_loop_deaths=0))


async def main():
    import ray
    from cjm_workers.backends.ray import RayBackend
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace='cjm-bench')
    local, remote = manager('local', None), manager('ray', RayBackend())
    figures = {}
    try:
        await local.start()
        await remote.start()
        for _ in range(20):  # warm both
            await round_trip(local); await round_trip(remote)
        rt = {'local': [], 'ray': []}
        for _ in range(N_NOOP):  # alternated: the machine's noise falls on both
            rt['local'].append(await round_trip(local)); rt['ray'].append(await round_trip(remote))
        st = {'local': [], 'ray': []}
        for _ in range(N_STREAM):
            st['local'].append(await stream(local)); st['ray'].append(await stream(remote))
        ca = {'local': [], 'ray': []}
        for _ in range(N_CANCEL):
            ca['local'].append(await cancel(local)); ca['ray'].append(await cancel(remote))
        cr = {'local': [], 'ray': []}
        for _ in range(N_CRASH):
            for b, mgr in (('local', local), ('ray', remote)): cr[b].append(await kill_under_a_job(mgr, sigkill_worker, 'SIGKILL'))
        lost = [(await kill_under_a_job(remote, kill_agent, 'worker node or agent lost'))[1] for _ in range(3)]
        med = statistics.median
        for b in ('local', 'ray'):
            figures[b] = {'round trip ms (median)': med(rt[b]) * 1e3, 'stream chunks/s (median)': med(st[b]),
                          'cooperative cancel ms (median)': med(ca[b]) * 1e3,
                          'crash detected ms (median)': med(c[0] for c in cr[b]) * 1e3,
                          'replacement ran the next job s (median)': med(c[1] for c in cr[b])}
    finally:
        await asyncio.gather(local.shutdown(), remote.shutdown(), return_exceptions=True)
        ray.shutdown()
    targets = {'round trip ms (median)': lambda v: v <= 5, 'stream chunks/s (median)': lambda v: v >= 100_000,
               'cooperative cancel ms (median)': lambda v: v <= 10, 'crash detected ms (median)': lambda v: v <= 50,
               'replacement ran the next job s (median)': lambda v: v <= figures['local']['replacement ran the next job s (median)'] + 1.5}
    figures['ray']['new agent after one was lost s (median)'] = med(lost)
    print("| Figure | Local workers | Ray workers | Ray target |\n|---|---|---|---|")
    for k, ok in targets.items():
        l, r = figures['local'][k], figures['ray'][k]
        fmt = (lambda v: f"{v:,.0f}") if 'chunks' in k else (lambda v: f"{v:.2f}")
        print(f"| {k} | {fmt(l)} | {fmt(r)} | {'met' if ok(r) else '**not met**'} |")
    print(f"| new agent after one was lost s (median) | | {figures['ray']['new agent after one was lost s (median)']:.2f} | (no target) |")
    sys.stdout.flush()


if __name__ == '__main__':
    asyncio.run(main())
