"""A plugin module that sets up state when it is imported (as model code often does), for the worker-start tests."""
import os, time

from cjm_workers.core.jobs import BaseJob, new_job_id
from cjm_workers.core.worker import base_worker_process
from cjm_workers.managers.base import BaseJobManager

IMPORTED_IN = os.getpid()  # the process that imported this module: the fork server's when it preloaded it
SEEN: list = []            # made at import; each job appends to it


class StatePlugins:
    "One plugin, 'state': it records its job in the module's state and says what that state holds."
    def discover_plugins(self): return ['state']
    def load_plugin(self, plugin_data, config): pass
    def check_streaming_support(self, name): return False
    def execute_plugin(self, name, tag='', env=''):
        SEEN.append(tag)
        return {'seen': list(SEEN), 'imported_in': IMPORTED_IN, 'pid': os.getpid(), 'env': os.environ.get(env) if env else None}


def worker(request_queue, result_queue, response_queue):
    base_worker_process(request_queue, result_queue, response_queue, plugin_manager_factory=StatePlugins)


class StateManager(BaseJobManager):
    "A manager of the 'state' plugin."
    def __init__(self, *a, **kw): super().__init__('state', 'state', *a, **kw)
    def create_job(self, plugin_id, **params): return BaseJob(id=new_job_id(), plugin_id=plugin_id, metadata={'params': params})
    def get_worker_entry_point(self): return worker
    def prepare_execute_request(self, job): return job.metadata['params']
    def extract_job_result(self, job, result_data): return result_data


async def two_workers(config, backend=None) -> list:
    "Run a job on a worker, let it be replaced (one job per worker), run another: both results."
    import asyncio
    m = StateManager(worker_config=config, worker_backend=backend)
    await m.start()
    try:
        out = []
        for tag in ('a', 'b'):
            deadline = time.monotonic() + 30  # until a worker that ran no job yet is ready (the last one is replaced)
            while not (m.health()['workers'] and m.health()['workers'][0]['state'] == 'RUNNING'
                       and all(r['pid'] != m.health()['workers'][0]['pid'] for r in out)):
                if time.monotonic() > deadline: raise TimeoutError("no new worker became ready")
                await asyncio.sleep(0.01)
            job = await m.start_job('state', tag=tag, env='CJM_TEST_SET_AFTER_START')
            await m.wait_for_job(job.id, 30)
            assert job.status == 'completed', job.error
            out.append(job.result)
            os.environ['CJM_TEST_SET_AFTER_START'] = 'seen by the next worker'
        return out
    finally: await m.shutdown()


def main(method:str):
    "Print both results as JSON (run in a fresh process, so its fork server starts there, asked to preload this module)."
    import asyncio, json
    from cjm_workers.core.config import WorkerConfig
    print(json.dumps(asyncio.run(two_workers(WorkerConfig(max_workers=1, max_jobs_per_worker=1, start_method=method)))))
