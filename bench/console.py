"""The console at scale: the jobs page over a journal of 100,000 jobs and the overview with 10,000 jobs in memory,
page size and server time (in-process requests, median of 10). Prints markdown."""
import asyncio, os, statistics, sys, tempfile, time

import httpx
from starlette.applications import Starlette

from cjm_workers.core.config import WorkerConfig
from cjm_workers.core.store import SQLiteJobStore
from cjm_workers.demo.plugins import DemoJobManager
from cjm_workers.web.mount import mount_jobs

N_JOURNAL, N_MEMORY = 100_000, 10_000


def fill(path):
    store = SQLiteJobStore(path)
    store.open('demo')
    plugins, statuses = ['echo', 'transcribe', 'generate', 'resize'], ['completed'] * 8 + ['failed', 'cancelled']
    t0 = time.time() - N_JOURNAL - 10
    iso = lambda s: time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(s)) + '.000000+00:00'
    for start in range(0, N_JOURNAL, 5000):
        jobs = [{'id': f'{i:032x}', 'plugin_id': plugins[i % 4], 'status': statuses[i % 10], 'priority': 0,
                 'created_at': iso(t0 + i), 'started_at': iso(t0 + i), 'completed_at': iso(t0 + i + 1), 'error': None,
                 'worker_pid': 1000, 'attempt': 1, 'result': {'text': 'x' * 50}, 'metadata': {'params': {'text': 'hello'}},
                 'owner': ('ann', 'bob', 'cy')[i % 3]}
                for i in range(start, start + 5000)]
        store.write('demo', jobs, {}, [])
    store.close('demo')


async def timed(c, path, n=10):
    sizes, ts = [], []
    for _ in range(n):
        t = time.perf_counter()
        r = await c.get(path)
        ts.append(time.perf_counter() - t)
        assert r.status_code == 200, (path, r.status_code)
        sizes.append(len(r.content))
    return statistics.median(sizes), statistics.median(ts)


async def main():
    rows = []
    path = f"{tempfile.mkdtemp()}/jobs.db"
    fill(path)
    m = DemoJobManager(job_store=path)
    await m.start()
    app = Starlette()
    jm = mount_jobs(app, m)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url='http://bench') as c:
        for what, url in (('jobs page, newest 50', '/jobs/jobs'), ('jobs page, status = failed', '/jobs/jobs?status=failed'),
                          ('jobs page, plugin = transcribe, page 100', '/jobs/jobs?plugin=transcribe&offset=5000'),
                          ('jobs page, offset 50,000', '/jobs/jobs?offset=50000'), ('jobs page, owner = ann', '/jobs/jobs?owner=ann'),
                          ('jobs page, longest run first', '/jobs/jobs?sort=duration'),
                          ('jobs page, owner = ann, last 24 h, longest first', '/jobs/jobs?owner=ann&range=24h&sort=duration')):
            size, t = await timed(c, url)
            rows.append((f"{what} ({N_JOURNAL:,} jobs in the journal)", size, t))
    jm.hub.close()
    await m.shutdown()
    m = DemoJobManager(worker_type='mem', worker_config=WorkerConfig(max_workers=2))
    await m.start()
    jobs = [await m.start_job('echo', text='hello') for _ in range(N_MEMORY)]
    for j in jobs: await m.wait_for_job(j.id, 120)
    app = Starlette()
    jm = mount_jobs(app, m)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url='http://bench') as c:
        size, t = await timed(c, '/jobs/')
        rows.append((f"overview ({N_MEMORY:,} jobs in memory)", size, t))
        size, t = await timed(c, '/jobs/stats')
        rows.append((f"stats page ({N_MEMORY:,} jobs in memory)", size, t))
    jm.hub.close()
    await m.shutdown()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print("| page | size | server time | target |\n|---|---|---|---|")
    for what, size, t in rows:
        target = "≤ 150 KB, ≤ 100 ms" if 'journal' in what else "bounded"
        print(f"| {what} | {size / 1000:.0f} KB | {t * 1e3:.1f} ms | {target} |")

if __name__ == '__main__':
    asyncio.run(main())
