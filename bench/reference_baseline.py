"""The reference library (cjm-fasthtml-workers 0.0.5, vendored in bench/reference/) measured as bench/run.py measures
cjm_workers: cold start, a cancel of a plugin that never checks then the next job, and a burst of no-op jobs.
Run by bench/run.py in the same run (a process of its own), or alone: prints JSON."""
import asyncio, json, pathlib, statistics, sys, time, uuid

sys.path.insert(0, str(pathlib.Path(__file__).parent / 'reference'))
from cjm_fasthtml_workers.core.config import WorkerConfig  # noqa: E402
from cjm_fasthtml_workers.core.worker import base_worker_process  # noqa: E402
from cjm_fasthtml_workers.managers.base import BaseJob, BaseJobManager  # noqa: E402

N_REPEAT, N_BURST, N_BURSTS = 5, 1000, 5  # bursts: the median of N_BURSTS, as bench/run.py shows its own


class Plugins:
    "A plugin manager for the reference's worker: a no-op job, and one that runs 30 s without checking for cancellation."
    def discover_plugins(self): return []
    def load_plugin(self, plugin_data, config): pass
    def check_streaming_support(self, name): return False
    def execute_plugin(self, name, kind='noop', **params):
        if kind == 'blind':
            end = time.time() + 30
            while time.time() < end: time.sleep(0.01)
        return {'text': ''}


def worker(request_queue, result_queue, response_queue):
    base_worker_process(request_queue, result_queue, response_queue, plugin_manager_factory=Plugins)


class Manager(BaseJobManager):
    def create_job(self, plugin_id, **params): return BaseJob(id=uuid.uuid4().hex, plugin_id=plugin_id, metadata=params)
    def get_worker_entry_point(self): return worker
    def prepare_execute_request(self, job): return dict(job.metadata)
    def extract_job_result(self, job, result_data): return result_data


async def done(job, timeout=30):
    "The reference cannot await a job: poll its status, as its apps do."
    end = time.monotonic() + timeout
    while job.status not in ('completed', 'failed', 'cancelled'):
        if time.monotonic() > end: raise TimeoutError(job.id)
        await asyncio.sleep(0.0005)


async def burst_rates(m, cpu=None) -> list:
    """The rates of N_BURSTS bursts of N_BURST no-op jobs, all submitted, then each polled until done; with `cpu`, the
    CPU time per job (µs) this process used in each burst, all its threads (the reference's queue threads too), is
    appended to it."""
    rates = []
    for _ in range(N_BURSTS):
        c, t = time.process_time(), time.perf_counter()
        jobs = [await m.start_job('noop') for _ in range(N_BURST)]
        for j in jobs: await done(j, 60)
        rates.append(N_BURST / (time.perf_counter() - t))
        if cpu is not None: cpu.append((time.process_time() - c) / N_BURST * 1e6)
    return rates


async def serve_bursts():
    """`--bursts`: for bench/run.py, which alternates sets of the reference's bursts with sets of its own, so that the
    machine's changes of pace (it is shared) fall on both alike. One set per line read from stdin, its rates and CPU
    times printed as a JSON object (`rates`, `cpu`); an empty line or end of input ends it."""
    m = Manager('ref', 'bench', worker_config=WorkerConfig())
    await done(await m.start_job('noop'))
    loop = asyncio.get_running_loop()
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        cpu = []
        print(json.dumps({'rates': await burst_rates(m, cpu), 'cpu': cpu}), flush=True)
    m.shutdown()


async def main():
    m = Manager('ref', 'bench', worker_config=WorkerConfig())
    t = time.perf_counter()
    await done(await m.start_job('noop'))
    cold = time.perf_counter() - t
    cancels = []
    for _ in range(N_REPEAT):
        j = await m.start_job('noop', kind='blind')  # the reference marks it running at submission: let the worker begin it
        await asyncio.sleep(0.05)
        t = time.perf_counter()
        await m.cancel_job(j.id)
        await done(await m.start_job('noop'))
        cancels.append(time.perf_counter() - t)
    burst = statistics.median(await burst_rates(m))
    m.shutdown()
    return {'cold': cold, 'cancel_blind': statistics.median(cancels), 'burst': burst}


if __name__ == '__main__':
    if sys.argv[1:] == ['--bursts']: asyncio.run(serve_bursts())
    else: print(json.dumps(asyncio.run(main())))
