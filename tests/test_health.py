"Worker health: heartbeats, recycling, memory limits, warm spares, lifecycle states and health(), with real processes."
import asyncio, os, signal, time
import psutil, pytest
from cjm_workers.managers.health import handle_state
from conftest import gone, started, wait_event, wait_until, worker_pids

FAST = dict(monitor_interval_seconds=0.05, heartbeat_interval_seconds=0.05)


async def test_hung_worker_is_killed_as_unresponsive_but_long_jobs_are_not(make_manager):
    m = make_manager(max_workers=1, heartbeat_timeout_seconds=0.5, **FAST)
    long = await m.start_job('sleep', seconds=1.5)          # three times the heartbeat timeout, but alive
    await m.wait_for_job(long.id, 10)
    assert long.status == 'completed'
    pid = worker_pids(m)[0]
    t = time.monotonic()
    hung = await m.start_job('hang', seconds=60)            # the whole process frozen: no heartbeats
    await m.wait_for_job(hung.id, 10)
    assert hung.status == 'failed' and hung.error.startswith('unresponsive: its worker sent no heartbeat for 0.5 s')
    assert time.monotonic() - t < 5 and gone(pid)
    ok = await m.start_job('echo', text='after')           # a fresh worker took over
    assert (await m.wait_for_job(ok.id, 10)).status == 'completed' and ok.worker_pid != pid


async def test_stopped_process_is_unresponsive(make_manager):
    m = make_manager(max_workers=1, heartbeat_timeout_seconds=0.3, **FAST)
    j = await m.start_job('sleep', seconds=30)
    await started(m, j)
    os.kill(j.worker_pid, signal.SIGSTOP)                   # as if stuck in a driver call
    await m.wait_for_job(j.id, 10)
    assert j.status == 'failed' and j.error.startswith('unresponsive')


async def test_max_jobs_per_worker_recycles_between_jobs(make_manager):
    m = make_manager(max_workers=1, max_jobs_per_worker=2)
    with m.events.subscribe(prefix='demo:worker_recycled') as sub:
        jobs = [await m.start_job('echo', text=str(i)) for i in range(5)]
        for j in jobs: await m.wait_for_job(j.id, 20)
        first = await wait_event(sub, 'demo:worker_recycled')
    assert [j.status for j in jobs] == ['completed'] * 5    # nothing lost across replacements
    pids = [j.worker_pid for j in jobs]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert first['reason'] == 'ran 2 jobs (max_jobs_per_worker=2)' and m.health()['recycled'] >= 2
    await wait_until(lambda: gone(pids[0]) and gone(pids[2]), what="recycled workers to exit")


async def test_memory_limits_recycle_between_jobs_and_kill_mid_job(make_manager):
    m = make_manager(max_workers=1, max_worker_memory_mb=250, max_worker_memory_hard_mb=600, **FAST)
    await m.start()
    base = await m.start_job('whoami')
    await m.wait_for_job(base.id, 10)
    soft = await m.start_job('hog', mb=300, seconds=0.3)   # over the soft limit: finishes, then its worker is replaced
    await m.wait_for_job(soft.id, 20)
    assert soft.status == 'completed'
    await wait_until(lambda: m.health()['recycled'] == 1, what="the worker to be recycled")
    hard = await m.start_job('hog', mb=700, seconds=30)     # over the hard limit: killed mid-job
    await m.wait_for_job(hard.id, 20)
    assert hard.status == 'failed' and 'over max_worker_memory_hard_mb=600' in hard.error
    assert hard.worker_pid != soft.worker_pid
    ok = await m.start_job('echo', text='still serving')
    assert (await m.wait_for_job(ok.id, 20)).status == 'completed'


async def test_warm_spare_replaces_a_killed_worker_without_a_cold_start(make_manager):
    m = make_manager(max_workers=1, spare_workers=1)
    await m.start()
    await wait_until(lambda: any(w['spare'] and w['state'] == 'RUNNING' for w in m.health()['workers']), what="the spare")
    spare_pid = next(w['pid'] for w in m.health()['workers'] if w['spare'])
    j = await m.start_job('sleep', seconds=30)
    await started(m, j)
    queued = await m.start_job('whoami')
    t = time.monotonic()
    os.kill(j.worker_pid, signal.SIGKILL)
    await m.wait_for_job(queued.id, 10)
    assert queued.worker_pid == spare_pid and time.monotonic() - t < 1.0
    await wait_until(lambda: sum(w['spare'] for w in m.health()['workers']) == 1, what="a new spare")
    assert m.health()['restarts'] == 1


async def test_health_and_lifecycle_states(make_manager):
    m = make_manager(max_workers=2, **FAST)
    assert m.state.value == 'INIT'
    await m.start()
    assert m.state.value == 'RUNNING'
    j = await m.start_job('count_primes', n=50_000)
    await m.wait_for_job(j.id, 10)
    await wait_until(lambda: all(w['rss_mb'] for w in m.health()['workers']), what="a resource sample")
    h = m.health()
    assert h['state'] == 'RUNNING' and h['queued'] == 0 and h['running'] == 0 and h['broken_reason'] is None
    workers = {w['pid']: w for w in h['workers']}
    assert set(workers) == set(worker_pids(m))
    w = workers[j.worker_pid]
    assert w['state'] == 'RUNNING' and w['jobs_done'] == 1 and w['loaded_plugins'] == ['count_primes']
    assert w['uptime_seconds'] > 0 and w['rss_mb'] > 5 and w['cpu_percent'] is not None and w['restarts'] == 0
    assert h['plugins']['count_primes']['ready_workers'] == [j.worker_pid]      # "hot": no load needed there
    assert h['plugins']['echo']['ready_workers'] == [] and h['plugins']['generate_text']['streaming']
    handles = list(m.pool.handles())
    stopping = m.shutdown()
    assert m.state.value == 'STOPPING'
    await stopping
    assert m.state.value == 'STOPPED' and [handle_state(x).value for x in handles] == ['STOPPED', 'STOPPED']


async def test_forced_shutdown_is_force_stopped(make_manager):
    m = make_manager(max_workers=1, cancel_grace_seconds=0.1, shutdown_timeout_seconds=0.5)
    j = await m.start_job('stubborn', seconds=30)
    await started(m, j)
    await m.shutdown()
    assert m.state.value == 'FORCE_STOPPED' and j.status == 'cancelled'


async def test_resource_manager_tracks_every_process_exactly(make_manager):
    class RM:
        def __init__(self): self.live, self.states, self.errors = set(), [], []
        def register_worker(self, pid, worker_type):
            if not psutil.pid_exists(pid): self.errors.append(('registered a dead pid', pid))
            self.live.add(pid)
        def unregister_worker(self, pid):
            if pid not in self.live: self.errors.append(('unregistered an unknown pid', pid))
            self.live.discard(pid)
        def update_worker_state(self, pid, **kw):
            if pid not in self.live: self.errors.append(('state of an unregistered pid', pid))
            self.states.append((pid, kw.get('status'), kw.get('job_id')))
        def check_gpu_availability(self): return None
        def get_worker_by_pid(self, pid): return None
    rm = RM()
    m = make_manager(max_workers=1, spare_workers=1, max_jobs_per_worker=2)
    m.resource_manager = rm
    await m.start()
    jobs = [await m.start_job('echo', text=str(i)) for i in range(5)]
    for j in jobs: await m.wait_for_job(j.id, 20)
    crash = await m.start_job('crash', how='sigkill')
    await m.wait_for_job(crash.id, 20)
    # a worker that has just died stays registered until its exit is reported (a fork server's child is reaped, and its
    # exit passed on, by that server: a few ms): wait for the registrations to match processes that are all alive
    await wait_until(lambda: rm.live == {p for p in (w['pid'] for w in m.health()['workers'])} and len(rm.live) == 2
                     and all(psutil.pid_exists(p) and not gone(p) for p in rm.live),
                     what="registrations to match the live processes")
    assert all(psutil.pid_exists(p) and not gone(p) for p in rm.live)
    for j in jobs: assert (j.worker_pid, 'running', j.id) in rm.states
    await m.shutdown()
    assert rm.live == set() and rm.errors == []
