"A small Starlette app around an EventHub, for the SSE tests (run by uvicorn in a subprocess)."
import asyncio, os
from contextlib import asynccontextmanager
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager
from cjm_workers.web.hub import EventHub
from cjm_workers.web.mount import mount_jobs
from cjm_workers.web.sse import sse_response

manager = DemoJobManager(worker_config=WorkerConfig(max_workers=1, cancel_grace_seconds=0.5))
hub = EventHub(manager)


async def events(request): return sse_response(hub, request, ping=1, send_timeout=float(os.environ.get('SEND_TIMEOUT', '10')))


async def submit(request):
    body = await request.json()
    job = await manager.start_job(body.pop('plugin'), **body)
    return JSONResponse({'id': job.id})


async def debug(request): return JSONResponse({'subscribers': hub.subscribers, 'tasks': len(asyncio.all_tasks())})


@asynccontextmanager
async def lifespan(app):
    await manager.start()
    try: yield
    finally:
        hub.close()
        await manager.shutdown()

app = Starlette(routes=[Route('/events', events), Route('/jobs', submit, methods=['POST']), Route('/debug', debug)],
                lifespan=lifespan)
user = lambda request: request.headers.get('x-user')  # stands in for a session's user
mount_jobs(app, manager, prefix='/ui', hub=hub, owner=user, access=lambda request, job, action: job.owner == user(request))
