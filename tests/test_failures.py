"Cancellation, worker death, restart policies and the pool, with real spawn workers."
import asyncio, os, signal, time
import pytest
from cjm_workers.core.config import RestartPolicy
from cjm_workers.managers.base import PluginCrashLoopError, WorkerUnavailableError
from conftest import wait_event, wait_until, worker_pids


async def started(m, job, timeout=10):
    with m.events.subscribe() as sub:
        if job.status == 'running': return
        await wait_event(sub, 'demo:started', timeout, job_id=job.id)


async def test_cancel_pending_touches_no_worker(make_manager):
    m = make_manager(max_workers=1)
    await m.start()
    pid = worker_pids(m)[0]
    running = await m.start_job('sleep', seconds=0.4)
    a, b, c = [await m.start_job('echo', text=t) for t in 'abc']
    await started(m, running)
    assert await m.cancel_job(b.id)
    assert b.status == 'cancelled' and b.error == 'cancelled before it started' and b.worker_pid is None
    for j in (running, a, c): await m.wait_for_job(j.id, 10)
    assert running.status == a.status == c.status == 'completed'
    assert a.started_at < c.started_at and worker_pids(m) == [pid]  # order kept, same worker


async def test_cancel_running_cooperative_keeps_worker(make_manager):
    m = make_manager(max_workers=1)
    await m.start()
    pid = worker_pids(m)[0]
    job = await m.start_job('sleep', seconds=30)
    nxt = await m.start_job('echo', text='next')
    await started(m, job)
    t = time.perf_counter()
    assert await m.cancel_job(job.id) is True
    assert time.perf_counter() - t < 2
    assert job.status == 'cancelled' and 'stopped on request' in job.error
    await m.wait_for_job(nxt.id, 10)
    assert nxt.status == 'completed' and nxt.worker_pid == pid and worker_pids(m) == [pid]
    assert await m.cancel_job(job.id) is False  # already final


async def test_cancel_stubborn_kills_after_grace_keeps_output_and_queue(make_manager):
    m = make_manager(max_workers=1, cancel_grace_seconds=0.3)
    await m.start()
    pid = worker_pids(m)[0]
    job = await m.start_job('stubborn_stream', chunks=3, seconds=60)
    after = [await m.start_job('echo', text=str(i)) for i in range(3)]
    with m.events.subscribe() as sub:
        while job.output != 'part0 part1 part2 ':
            await wait_event(sub, 'demo:chunk', job_id=job.id)
    t = time.perf_counter()
    assert await m.cancel_job(job.id) is True
    took = time.perf_counter() - t
    assert 0.25 < took < 5, took
    assert job.status == 'cancelled' and 'did not stop within 0.3 s' in job.error
    assert job.output == 'part0 part1 part2 '  # what was streamed before the kill is kept
    for j in after: await m.wait_for_job(j.id, 20)
    assert [j.result['text'] for j in after] == ['0', '1', '2']
    assert [j.status for j in after] == ['completed'] * 3
    assert after[0].started_at < after[1].started_at < after[2].started_at
    assert worker_pids(m) and worker_pids(m) != [pid] and m.restart_count == 1


@pytest.mark.parametrize('how,expect', [('exit', 'exited unexpectedly with code 3'), ('sigkill', 'SIGKILL (possibly out of memory'),
                                        ('sigsegv', 'killed by SIGSEGV'), ('abort', 'killed by SIGABRT')])
async def test_worker_death_fails_job_with_reason_and_keeps_queue(make_manager, how, expect):
    m = make_manager(max_workers=1)
    await m.start()
    job = await m.start_job('crash', how=how, code=3)
    queued = [await m.start_job('echo', text=str(i)) for i in range(2)]
    await m.wait_for_job(job.id, 10)
    assert job.status == 'failed' and expect in job.error, job.error
    for q in queued: await m.wait_for_job(q.id, 20)
    assert [q.status for q in queued] == ['completed'] * 2  # ran on the restarted worker


async def test_external_sigkill_detected_fast(make_manager):
    m = make_manager(max_workers=1)
    await m.start()
    job = await m.start_job('sleep', seconds=30)
    await started(m, job)
    t = time.perf_counter()
    os.kill(job.worker_pid, signal.SIGKILL)
    await m.wait_for_job(job.id, 5)
    detected = time.perf_counter() - t
    assert job.status == 'failed' and 'SIGKILL' in job.error and 'out of memory' in job.error
    assert detected < 0.5, detected  # the benchmark reports the real figure (target 50 ms)


async def test_never_policy_fails_queue_and_rejects_submissions(make_manager):
    m = make_manager(max_workers=1, restart_policy='never')
    await m.start()
    job = await m.start_job('crash', how='exit', code=2)
    queued = await m.start_job('echo', text='x')
    await m.wait_for_job(queued.id, 10)
    assert job.status == 'failed' and queued.status == 'failed' and 'restart_policy is NEVER' in queued.error
    assert m.broken_reason and 'NEVER' in m.broken_reason
    with pytest.raises(WorkerUnavailableError, match='NEVER'): await m.start_job('echo', text='y')
    assert worker_pids(m) == []


async def test_on_cancellation_policy_restarts_only_after_cancel_kill(make_manager):
    m = make_manager(max_workers=1, restart_policy=RestartPolicy.ON_CANCELLATION, cancel_grace_seconds=0.2)
    await m.start()
    j = await m.start_job('stubborn', seconds=30)
    await started(m, j)
    await m.cancel_job(j.id)
    ok = await m.start_job('echo', text='restarted')
    assert (await m.wait_for_job(ok.id, 20)).status == 'completed'
    crash = await m.start_job('crash', how='exit')
    await m.wait_for_job(crash.id, 10)
    with pytest.raises(WorkerUnavailableError, match='ON_CANCELLATION'): await m.start_job('echo', text='x')


async def test_jobs_that_kill_their_workers_never_break_the_manager(make_manager):
    "Cancel kills and job crashes are the jobs' failures: with max_restart_attempts=1, six of them leave it running."
    m = make_manager(max_workers=1, max_restart_attempts=1, cancel_grace_seconds=0.1, crash_loop_deaths=0)
    await m.start()
    for _ in range(2):  # kills for cancellation
        j = await m.start_job('stubborn', seconds=30)
        await started(m, j, 20)
        await m.cancel_job(j.id)
    for _ in range(4):  # jobs that kill their own worker (the demo's "kill my own worker" button, four times)
        crash = await m.start_job('crash', how='exit')
        await m.wait_for_job(crash.id, 20)
        assert crash.status == 'failed' and 'code 3' in crash.error
    ok = await m.start_job('echo', text='still here')
    assert (await m.wait_for_job(ok.id, 20)).status == 'completed'
    assert m.health()['state'] == 'RUNNING' and m.pool.slots[0].failures == 0


@pytest.mark.local_only  # a worker gets the web process's environment of the moment only on this machine (a Ray node has its own)
async def test_failed_starts_use_up_the_restart_budget(make_manager, tmp_path, monkeypatch):
    "A worker that cannot start (here: a plugin manager factory that begins to fail) is retried max_restart_attempts times."
    from cjm_workers.demo.plugins import DemoJobManager
    import bad_workers
    flag = tmp_path / 'fail-now'
    monkeypatch.setenv('CJM_TEST_FAIL_START_FILE', str(flag))
    class Flaky(DemoJobManager):
        def get_worker_entry_point(self): return bad_workers.fails_once_flagged_worker
    m = make_manager(cls=Flaky, max_workers=1, max_restart_attempts=2)
    await m.start()
    flag.write_text('')  # from now on, new workers cannot start
    crash = await m.start_job('crash', how='exit')
    waiting = await m.start_job('echo', text='queued behind the crash')
    await m.wait_for_job(waiting.id, 30)
    assert crash.status == 'failed' and waiting.status == 'failed'
    assert 'gave up after 2 failed starts in a row' in waiting.error and 'factory refuses' in waiting.error
    assert m.restart_count == 3  # the first restart, then two more tries
    with pytest.raises(WorkerUnavailableError, match='broken'): await m.start_job('echo')


async def test_crash_loop_of_one_plugin_is_contained(make_manager):
    m = make_manager(max_workers=1, crash_loop_deaths=3, crash_loop_window_seconds=30, crash_loop_cooldown_seconds=1.0)
    await m.start()
    with m.events.subscribe(prefix='demo:plugin_crash_loop') as sub:
        for _ in range(3):
            crash = await m.start_job('crash', how='sigkill')
            await m.wait_for_job(crash.id, 20)
        ev = await wait_event(sub, 'demo:plugin_crash_loop', 5)
    assert ev['plugin_id'] == 'crash' and ev['deaths'] == 3 and 'SIGKILL' in ev['reason']
    with pytest.raises(PluginCrashLoopError, match="plugin 'crash' is cooling down until .*SIGKILL"):
        await m.start_job('crash', how='exit')
    assert 'crash' in m.health()['crash_loops']
    from fastcore.xml import to_xml
    from cjm_workers.web.components import manager_panel
    assert 'crash refused until' in to_xml(manager_panel('demo', m.health()))
    ok = await m.start_job('echo', text='other plugins keep running')
    assert (await m.wait_for_job(ok.id, 20)).status == 'completed'
    await asyncio.sleep(1.05)  # the cool-down ends
    again = await m.start_job('crash', how='exit')
    await m.wait_for_job(again.id, 20)
    assert again.status == 'failed' and m.health()['crash_loops'] == {}


async def test_a_surviving_job_resets_its_plugins_crash_count(make_manager):
    m = make_manager(max_workers=1, crash_loop_deaths=2, crash_loop_window_seconds=30)
    for how in ('exit', None, 'exit', None, 'exit'):  # never two deaths in a row
        j = await (m.start_job('crash', how=how) if how else m.start_job('crash', how='nonsense'))  # 'nonsense' raises, worker lives
        await m.wait_for_job(j.id, 20)
    assert m.health()['crash_loops'] == {}


async def test_backoff_does_not_block_and_resets_after_stable_run(make_manager, stall_monitor):
    m = make_manager(max_workers=1, restart_policy='backoff', restart_backoff_base_seconds=0.3,
                     restart_backoff_max_seconds=5, max_restart_attempts=5, restart_reset_seconds=0.5)
    await m.start()
    async with stall_monitor() as mon:
        c1 = await m.start_job('crash', how='exit')
        await m.wait_for_job(c1.id, 10)
        t = time.perf_counter()
        ok = await m.start_job('echo', text='a')
        await m.wait_for_job(ok.id, 10)
        first_delay = time.perf_counter() - t
        c2 = await m.start_job('crash', how='exit')  # second consecutive failure: 0.6 s
        await m.wait_for_job(c2.id, 10)
        t = time.perf_counter()
        ok = await m.start_job('echo', text='b')
        await m.wait_for_job(ok.id, 10)
        second_delay = time.perf_counter() - t
    assert 0.3 <= first_delay < 3 and 0.6 <= second_delay < 4, (first_delay, second_delay)
    assert mon.worst < 0.05, mon.worst
    assert m.pool.slots[0].deaths == 2
    await asyncio.sleep(0.6)  # let the worker run stably past restart_reset_seconds
    c3 = await m.start_job('crash', how='exit')
    await m.wait_for_job(c3.id, 10)
    assert m.pool.slots[0].deaths == 1  # the count started again


async def test_pool_runs_jobs_concurrently_and_isolates_failures(make_manager):
    m = make_manager(max_workers=2)
    await m.start()
    assert len(set(worker_pids(m))) == 2
    long = await m.start_job('sleep', seconds=1.0)
    crash = await m.start_job('crash', how='sigkill', after=0.2)
    await m.wait_for_job(crash.id, 10)
    assert crash.status == 'failed' and long.status == 'running'
    await m.wait_for_job(long.id, 10)
    assert long.status == 'completed'  # losing one worker never disturbs the other
    t = time.perf_counter()
    a, b = await m.start_job('sleep', seconds=0.5), await m.start_job('sleep', seconds=0.5)
    await m.wait_for_job(a.id, 10); await m.wait_for_job(b.id, 10)
    assert time.perf_counter() - t < 0.95 and a.worker_pid != b.worker_pid


async def test_pool_prefers_worker_with_plugin_loaded(make_manager):
    m = make_manager(max_workers=2)
    await m.start()
    hold = await m.start_job('sleep', seconds=0.3)    # slot 0
    first = await m.start_job('whoami')               # slot 1 loads 'whoami'
    await m.wait_for_job(first.id, 10); await m.wait_for_job(hold.id, 10)
    assert first.worker_pid != hold.worker_pid
    again = await m.start_job('whoami')               # both idle: goes where it is loaded
    await m.wait_for_job(again.id, 10)
    assert again.worker_pid == first.worker_pid and again.result['loaded'] == ['whoami']


async def test_resource_manager_sees_real_pids(make_manager):
    class RM:
        def __init__(self): self.live, self.states = set(), []
        def register_worker(self, pid, worker_type): self.live.add(pid)
        def unregister_worker(self, pid): self.live.discard(pid)
        def update_worker_state(self, pid, **kw): self.states.append((pid, kw.get('status'), kw.get('job_id')))
        def check_gpu_availability(self): return None
        def get_worker_by_pid(self, pid): return None
    rm = RM()
    m = make_manager(max_workers=1)
    m.resource_manager = rm
    await m.start()
    assert rm.live == set(worker_pids(m))
    job = await m.start_job('crash', how='exit')
    await m.wait_for_job(job.id, 10)
    ok = await m.start_job('echo', text='x')
    await m.wait_for_job(ok.id, 10)
    assert rm.live == set(worker_pids(m)) and job.worker_pid not in rm.live
    assert (ok.worker_pid, 'running', ok.id) in rm.states and (ok.worker_pid, 'idle', None) in rm.states
    await m.shutdown()
    assert rm.live == set()


async def test_unimportable_entry_point_is_a_clear_start_error():
    from cjm_workers.demo.plugins import DemoJobManager
    class LambdaEntry(DemoJobManager):
        def get_worker_entry_point(self): return lambda *a: None  # spawn cannot pickle this
    m = LambdaEntry()
    try:
        with pytest.raises(WorkerUnavailableError, match='could not be started.*(pickle|lambda)'): await m.start()
    finally:
        await asyncio.wait_for(m.shutdown(), 10)


async def test_deliberate_kill_is_not_reported_as_a_crash(make_manager):
    m = make_manager(max_workers=1, cancel_grace_seconds=0.1)
    await m.start()
    with m.events.subscribe(prefix='demo:worker_died') as sub:
        j = await m.start_job('stubborn', seconds=30)
        await started(m, j)
        await m.cancel_job(j.id)
        died = await wait_event(sub, 'demo:worker_died')
    assert died['deliberate'] and 'killed by the manager (cancel)' in died['reason'] and 'memory' not in died['reason']
