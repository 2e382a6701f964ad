"""A web app whose jobs run in an owner process: run by `uvicorn multi_web_app:app --workers N` in tests/test_remote.py.

Each web process has a `RemoteJobManager` for the owner on CJM_TEST_OWNER and answers with its pid, so a test can
tell which process served it; the console is mounted as with a local manager."""
import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from cjm_workers.remote import RemoteJobManager
from cjm_workers.web.mount import mount_jobs

jobs = RemoteJobManager('demo', socket=os.environ['CJM_TEST_OWNER'])


async def submit(request):
    d = await request.json()
    job = await jobs.start_job(d['plugin'], **d.get('params', {}))
    return JSONResponse({'id': job.id, 'pid': os.getpid()})


async def stream(request):
    async def body():
        async for piece in jobs.stream_job(request.path_params['job_id']): yield piece
    return StreamingResponse(body(), media_type='text/plain', headers={'x-pid': str(os.getpid())})


async def cancel(request):
    return JSONResponse({'cancelled': await jobs.cancel_job(request.path_params['job_id']), 'pid': os.getpid()})


async def whoami(request):
    return JSONResponse({'pid': os.getpid(), 'children': len(__import__('psutil').Process().children()),
                         'browsers': sum(len(s.subs) for s in proxy.shared.values())})  # on the shared streams


app = Starlette(routes=[Route('/submit', submit, methods=['POST']), Route('/stream/{job_id}', stream),
                        Route('/cancel/{job_id}', cancel, methods=['POST']), Route('/whoami', whoami)])
# the console, the JSON API and the event streams: the owner's, through this process; a job submitted there is owned
# by the user this process names (here from a header its proxy would set)
proxy = mount_jobs(app, jobs, owner=lambda request: request.headers.get('x-user'),
                   send_timeout=float(os.environ.get('CJM_TEST_SEND_TIMEOUT', '10')))
