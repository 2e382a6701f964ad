"""Several web processes, one owner: what a call costs through `RemoteJobManager` (the owner in another process, on a
Unix socket) against the same call on an in-process manager, measured alternately in one run. Prints markdown.

- a no-op job, submitted and awaited until completed (the API's overhead per call: targets <= 3 ms more);
- a stream of 50 chunks 10 ms apart, from its submission to its last chunk read (target: <= in-process + 5 ms);
- a cancel of a running cooperative job, from the call until the job is `cancelled` (target: <= 10 ms)."""
import asyncio, os, signal, statistics, subprocess, sys, tempfile, time

import httpx

from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager
from cjm_workers.remote import RemoteJobManager

N_NOOP, N_STREAM, N_CANCEL = 300, 15, 30
CHUNKS, INTERVAL = 50, 0.01


async def until_serving(path, proc):
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=path), base_url='http://owner') as c:
        for _ in range(600):
            if proc.poll() is not None: raise RuntimeError(f"the owner exited: {proc.stderr.read()}")
            try:
                if (await c.get('/jobs/api/health')).status_code == 200: return
            except httpx.TransportError: pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the owner did not start")


async def noop(m):
    t = time.perf_counter()
    j = await m.start_job('noop')
    await m.wait_for_job(j.id)
    return time.perf_counter() - t


async def stream(m):
    t = time.perf_counter()
    j = await m.start_job('drip', count=CHUNKS, interval=INTERVAL)
    got = ''
    async for piece in m.stream_job(j.id): got += piece
    assert len(got) > 0
    return time.perf_counter() - t


async def cancel(m, status):
    j = await m.start_job('sleep', seconds=30)
    while await status(j.id) != 'running': await asyncio.sleep(0.005)
    t = time.perf_counter()
    assert await m.cancel_job(j.id)
    return time.perf_counter() - t


async def main():
    d = tempfile.mkdtemp()
    path = f"{d}/owner.sock"
    owner = subprocess.Popen([sys.executable, '-m', 'cjm_workers', 'serve', 'cjm_workers.demo.plugins:demo_managers', '--socket', path,
                              '--log-level', 'warning'], stderr=subprocess.PIPE, text=True, start_new_session=True)
    local = DemoJobManager('local', worker_config=WorkerConfig(max_workers=2))
    try:
        await until_serving(path, owner)
        await local.start()
        async with RemoteJobManager('demo', socket=path) as remote:
            async def remote_status(job_id): return (await remote.get_job(job_id)).status
            async def local_status(job_id): return local.jobs[job_id].status
            for m in (local, remote):  # warm up: workers, connections, the event stream
                for _ in range(20): await noop(m)
                await stream(m)
            r = {k: [] for k in ('noop_l', 'noop_r', 'stream_l', 'stream_r', 'cancel_l', 'cancel_r', 'get_l', 'get_r')}
            known = await local.start_job('noop'); await local.wait_for_job(known.id)
            known_r = await remote.start_job('noop'); await remote.wait_for_job(known_r.id)
            for _ in range(N_NOOP):  # one request: a job read by id
                t = time.perf_counter(); local.get_job(known.id); r['get_l'].append(time.perf_counter() - t)
                t = time.perf_counter(); await remote.get_job(known_r.id); r['get_r'].append(time.perf_counter() - t)
            for _ in range(N_NOOP // 20):
                for _ in range(20): r['noop_l'].append(await noop(local))
                for _ in range(20): r['noop_r'].append(await noop(remote))
            for _ in range(N_STREAM):
                r['stream_l'].append(await stream(local))
                r['stream_r'].append(await stream(remote))
            for _ in range(N_CANCEL):
                r['cancel_l'].append(await cancel(local, local_status))
                r['cancel_r'].append(await cancel(remote, remote_status))
    finally:
        await local.shutdown()
        owner.send_signal(signal.SIGTERM)
        try: owner.wait(30)
        except subprocess.TimeoutExpired: os.killpg(owner.pid, signal.SIGKILL)
    med = {k: statistics.median(v) * 1e3 for k, v in r.items()}
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; medians\n")
    print("| figure | in-process manager | RemoteJobManager (owner on a Unix socket) | difference | target |")
    print("|---|---|---|---|---|")
    print(f"| one call: `get_job` | {med['get_l']:.3f} ms | {med['get_r']:.2f} ms | +{med['get_r'] - med['get_l']:.2f} ms | ≤ +3 ms per call |")
    print(f"| no-op job, submitted and awaited (`start_job`, then `wait_for_job`: three requests and an event) | {med['noop_l']:.2f} ms | {med['noop_r']:.2f} ms | +{med['noop_r'] - med['noop_l']:.2f} ms |  |")
    print(f"| {CHUNKS}-chunk stream ({INTERVAL * 1e3:g} ms apart), submission to last chunk | {med['stream_l']:.1f} ms | {med['stream_r']:.1f} ms "
          f"| +{med['stream_r'] - med['stream_l']:.1f} ms | ≤ +5 ms |")
    print(f"| cancel of a running cooperative job, until `cancelled` | {med['cancel_l']:.2f} ms | {med['cancel_r']:.2f} ms | "
          f"+{med['cancel_r'] - med['cancel_l']:.2f} ms | ≤ 10 ms |")


if __name__ == '__main__': asyncio.run(main())
