"""The server side of bench/sse.py: a Starlette app with a demo manager mounted at /jobs, and /raw, a bare
sse-starlette fan-out of the same ticks made in the server itself (the baseline: no worker, no hub)."""
import asyncio, json, time
from contextlib import asynccontextmanager

import psutil
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager
from cjm_workers.web.mount import mount_jobs

manager = DemoJobManager(worker_config=WorkerConfig(max_workers=1))
raw_queues = set()


async def raw(request):
    q = asyncio.Queue()
    async def gen():
        raw_queues.add(q)
        try:
            yield ServerSentEvent(data='{}', event='snapshot')
            while True: yield await q.get()
        finally: raw_queues.discard(q)
    return EventSourceResponse(gen(), ping=15, send_timeout=30)


async def raw_ticks(count, interval):
    start = time.monotonic()
    for i in range(count):
        e = ServerSentEvent(data=json.dumps({'data': {'chunk': f"{i} {time.time():.6f}\n"}}), event='chunk')
        for q in raw_queues: q.put_nowait(e)
        delay = start + (i + 1) * interval - time.monotonic()
        if delay > 0: await asyncio.sleep(delay)
    for q in raw_queues: q.put_nowait(ServerSentEvent(data='{}', event='completed'))


async def raw_start(request):
    q = request.query_params
    asyncio.get_running_loop().create_task(raw_ticks(int(q['count']), float(q['interval'])))
    return JSONResponse({'subscribers': len(raw_queues)})


async def stats(request):
    return JSONResponse({'rss_mb': psutil.Process().memory_info().rss / 2**20, 'raw': len(raw_queues),
                         'hub': jobs.hub.subscribers, 'tasks': len(asyncio.all_tasks())})


@asynccontextmanager
async def lifespan(app):
    await manager.start()
    try: yield
    finally:
        jobs.hub.close()
        await manager.shutdown()

app = Starlette(routes=[Route('/raw', raw), Route('/raw/start', raw_start, methods=['POST']), Route('/stats', stats)], lifespan=lifespan)
jobs = mount_jobs(app, manager)
