"A FastHTML app with the job API mounted, for the fuzz tests (run by uvicorn in a subprocess)."
from fasthtml.common import FastHTML
from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager
from cjm_workers.web.mount import mount_jobs
from app_support import serving_lifespan

manager = DemoJobManager(worker_config=WorkerConfig(max_workers=1, cancel_grace_seconds=0.5, request_queue_size=200),
                         plugins=['echo', 'noop', 'sleep', 'fail', 'count_primes'])


mounts = []
lifespan = serving_lifespan(manager, mounts)

app = FastHTML(lifespan=lifespan, secret_key='fuzz')
jobs = mount_jobs(app, manager)
mounts.append(jobs)
