"""A web app whose console runs under the owner's access rule: run by `uvicorn access_web_app:app --workers N` in
tests/test_remote.py. The signed-in user comes from an `x-user` header here (a real app: its session); this process
names them to the owner, which decides (`serve --access remote_factory:only_their_own`)."""
import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from cjm_workers.remote import RemoteJobManager
from cjm_workers.web.mount import mount_jobs

jobs = RemoteJobManager('demo', socket=os.environ['CJM_TEST_OWNER'])


def user(request):
    name = request.headers.get('x-user')
    return {'user': name, 'role': 'admin' if name == 'root' else 'user'} if name else None


async def whoami(request): return JSONResponse({'pid': os.getpid()})


app = Starlette(routes=[Route('/whoami', whoami)])
mount_jobs(app, jobs, identity=user, owner=lambda request: request.headers.get('x-user'))
