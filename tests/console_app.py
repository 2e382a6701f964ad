"""A FastHTML app whose console has an access rule (each user sees and acts on their own jobs, named by an X-User header),
for the browser tests; with CONSOLE_JOURNAL=path it journals there instead and has no access rule."""
import os
from fasthtml.common import FastHTML
from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager
from cjm_workers.web.mount import mount_jobs
from app_support import serving_lifespan

JOURNAL = os.environ.get('CONSOLE_JOURNAL')
manager = DemoJobManager(worker_config=WorkerConfig(max_workers=2, cancel_grace_seconds=0.5), job_store=JOURNAL)


def user(request): return request.headers.get('x-user')
def access(request, job, action): return user(request) is not None and job.owner == user(request)


mounts = []
lifespan = serving_lifespan(manager, mounts)

app = FastHTML(lifespan=lifespan, secret_key='console')
jobs = mount_jobs(app, manager, access=None if JOURNAL else access, owner=user, presets=[('Echo', 'echo', {'text': 'hi'})])
mounts.append(jobs)
