import asyncio, contextlib, os, signal, time
import psutil, pytest
from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager


def pytest_addoption(parser):
    parser.addoption('--backend', choices=('local', 'ray'), default='local',
                     help="where the managers' workers run: processes here (local) or actors on a local Ray cluster (ray)")


def pytest_configure(config):
    config.addinivalue_line('markers', "ray: needs Ray; runs only with --backend ray")
    config.addinivalue_line('markers', "local_only: about worker processes on this machine (start methods, pipes): not run with --backend ray")
    if config.getoption('backend') == 'ray':  # Ray kept on loopback: set before Ray is imported, for --backend ray only
        from cjm_workers.backends.ray import keep_ray_on_loopback  # imports no Ray
        keep_ray_on_loopback()


def pytest_collection_modifyitems(config, items):
    on_ray = config.getoption('backend') == 'ray'
    if on_ray:
        try: import ray  # noqa: F401
        except ImportError:
            for item in items: item.add_marker(pytest.mark.skip(reason="Ray is not installed: pip install 'cjm-workers[ray]'"))
            return
    for item in items:
        if on_ray and 'local_only' in item.keywords: item.add_marker(pytest.mark.skip(reason="about local worker processes"))
        elif not on_ray and 'ray' in item.keywords: item.add_marker(pytest.mark.skip(reason="runs with --backend ray"))


@pytest.fixture(scope='session')
def backend(request) -> str: return request.config.getoption('backend')


@pytest.fixture(scope='session')
def ray_cluster(backend):
    "With --backend ray: one local Ray for the session, on loopback: a head node (2 CPUs, 2 GPUs declared) and a second node with a custom resource."
    if backend != 'ray':
        yield None
        return
    import ray
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={'num_cpus': 2, 'num_gpus': 2, 'include_dashboard': False})
    try:
        cluster.add_node(num_cpus=1, resources={'second_node': 1})
        ray.init(address=cluster.address, log_to_driver=False, namespace='cjm-tests')
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def make_backend(backend:str):
    "A worker backend for a test's manager: None (the default, local) or a Ray backend on the session's cluster."
    if backend != 'ray': return None
    from cjm_workers.backends.ray import RayBackend
    # the nodes must import what the workers run: here the tests' own modules (bad_workers, ...), as a deployment
    # ships its plugins with a runtime_env
    return RayBackend(actor_options={'runtime_env': {'env_vars': {'PYTHONPATH': os.path.dirname(__file__)}}})


@pytest.fixture
async def make_manager(backend, ray_cluster):
    "Build DemoJobManagers (or `cls=` a subclass), their workers where --backend says; every one is shut down (and its workers killed) when the test ends."
    made = []
    def make(cls=DemoJobManager, **config):
        "WorkerConfig fields, plus the manager's own arguments (worker_type, resources, plugin_resources, ...)."
        manager_args = {k: config.pop(k) for k in ('event_broadcaster', 'worker_type', 'resources', 'plugin_resources',
                                                   'plugin_parameters', 'job_store', 'plugins', 'durable_start', 'worker_backend') if k in config}
        manager_args.setdefault('worker_backend', make_backend(backend))
        m = cls(worker_config=WorkerConfig(**config), **manager_args)
        made.append(m)
        return m
    try: yield make
    finally:
        for m in made:
            pids = [s.handle.pid for s in m.pool.slots if s.handle is not None and s.handle.pid]
            try: await asyncio.wait_for(m.shutdown(), 20)
            finally:
                for pid in pids:
                    with contextlib.suppress(OSError): os.kill(pid, signal.SIGKILL)


class StallMonitor:
    "Measures the event loop's worst stall: the largest lateness of a 1 ms periodic wake-up (`at_exit`: also the one still\n    pending when the block ends, which a stall right before the end of the measured work would otherwise escape)."
    def __init__(self, at_exit:bool=False): self.worst, self._task, self._since, self.at_exit = 0.0, None, None, at_exit
    async def _run(self):
        while True:
            self._since = t = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - t - 0.001)
    async def __aenter__(self):
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.01)
        self.worst = 0.0
        return self
    async def __aexit__(self, *exc):
        # a stall just before the exit delays this very code: count the wake-up it is keeping late
        if self.at_exit and self._since is not None: self.worst = max(self.worst, time.perf_counter() - self._since - 0.001)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError): await self._task


@pytest.fixture
def stall_monitor(): return StallMonitor


async def wait_until(pred, timeout=10.0, what="condition"):
    "Poll a cheap in-process predicate on the loop (event-driven state, checked each tick)."
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end: raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


def worker_pids(m): return [s.handle.pid for s in m.pool.slots if s.handle is not None and s.handle.alive and s.handle.pid]


def gone(pid):
    try: return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess: return True


async def wait_event(sub, event_type, timeout=10.0, **match):
    "Wait for the next event of this type (and matching data fields) on a subscription."
    async with asyncio.timeout(timeout):
        while True:
            t, d = await sub.get()
            if t == event_type and all(d.get(k) == v for k, v in match.items()): return d


async def started(m, job, timeout=10.0):
    "Wait until a job is running (its worker has begun it)."
    with m.events.subscribe() as sub:
        if job.status == 'pending': await wait_event(sub, f'{m.worker_type}:started', timeout, job_id=job.id)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(args, ready_path, env=None, timeout=30):
    "Run a server (`args` get `--port N`) on 127.0.0.1 until `ready_path` answers; yield (url, process); stop it and its children."
    import subprocess, sys, tempfile
    import httpx
    port = free_port()
    out = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server must never block on a full pipe
    p = subprocess.Popen([sys.executable, *args, '--port', str(port)], stdout=out, stderr=subprocess.STDOUT,
                         env={**os.environ, **(env or {})})
    def output():
        out.seek(0)
        return out.read().decode(errors='replace')
    p.output = output  # what the server printed so far
    try:
        url = f'http://127.0.0.1:{port}'
        end = time.monotonic() + timeout
        while True:
            try:
                httpx.get(url + ready_path, timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > end or p.poll() is not None:
                    raise AssertionError(f"server did not start: {output()[-3000:]}")
                time.sleep(0.1)
        yield url, p
    finally:
        kids = [c.pid for c in psutil.Process(p.pid).children(recursive=True)] if p.poll() is None else []
        p.send_signal(signal.SIGTERM)
        try: p.wait(15)
        except Exception: pass
        finally:
            p.kill()
            p.wait(5)
            for k in kids:
                try: psutil.Process(k).kill()
                except psutil.NoSuchProcess: pass
            out.close()
