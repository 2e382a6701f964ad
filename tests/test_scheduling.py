"Priorities, resource slots, time limits, retries and parameter validation, with real worker processes."
import asyncio, time
from datetime import datetime
import pytest
from cjm_workers import ParameterError
from cjm_workers.managers.scheduling import ResourcePool
from conftest import started, wait_event, worker_pids


def ts(s): return datetime.fromisoformat(s)


async def test_priorities_order_the_queue_and_can_change(make_manager):
    m = make_manager(max_workers=1)
    blocker = await m.start_job('sleep', seconds=30)
    await started(m, blocker)
    jobs = {}
    for name, p in [('a', 0), ('b', 5), ('c', 0), ('d', 5), ('e', 1), ('f', 0)]:
        jobs[name] = await m.start_job('echo', text=name, priority=p)
    assert m.queued_job_ids() == [jobs[n].id for n in 'bdeacf']       # higher first, FIFO within a priority
    assert m.set_job_priority(jobs['c'].id, 5)                          # c was submitted before d
    assert m.move_job_to_front(jobs['f'].id)
    assert not m.set_job_priority(blocker.id, 9) and not m.move_job_to_front('nope')  # only waiting jobs
    with m.events.subscribe(prefix='demo:started') as sub:
        await m.cancel_job(blocker.id)
        order = [(await wait_event(sub, 'demo:started'))['job_id'] for _ in jobs]
    assert order == [jobs[n].id for n in 'fbcdea']
    assert jobs['c'].priority == 5
    with pytest.raises(ValueError, match='priority must be an int'): await m.start_job('echo', priority='high')
    with pytest.raises(ValueError, match='priority must be an int between'): await m.start_job('echo', priority=2**62)  # it would not fit a queue key
    with pytest.raises(ValueError, match='priority must be an int between'): m.set_job_priority(jobs['a'].id, -2**70)


async def test_resource_slots_cap_holders_while_other_jobs_flow(make_manager):
    m = make_manager(max_workers=2, resources={'gpu': 1}, plugin_resources={'sleep': {'gpu': 1}})
    await m.start()
    g1 = await m.start_job('sleep', seconds=30)
    g2 = await m.start_job('sleep', seconds=0.01)
    await started(m, g1)
    free = await m.start_job('echo', text='no gpu needed')               # the second worker is idle: it runs this
    await m.wait_for_job(free.id, 10)
    assert free.status == 'completed' and g2.status == 'pending'        # g2 waits for the GPU, not for a worker
    assert m.health()['resources'] == {'gpu': {'limit': 1, 'in_use': 1}}
    await m.cancel_job(g1.id)
    await m.wait_for_job(g2.id, 10)
    assert g2.status == 'completed' and ts(g2.started_at) >= ts(g1.completed_at)
    assert m.health()['resources']['gpu']['in_use'] == 0
    cpu = await m.start_job('echo', text='x', resources={})            # a job may override its plugin's needs
    assert (await m.wait_for_job(cpu.id, 10)).status == 'completed'
    with pytest.raises(ValueError, match="needs 2 'gpu' but the limit is 1"): await m.start_job('sleep', resources={'gpu': 2})
    with pytest.raises(ValueError, match="unknown resource 'tpu'"): await m.start_job('echo', resources={'tpu': 1})
    assert not m.queued_job_ids()


async def test_one_gpu_shared_by_two_managers(make_manager):
    gpu = ResourcePool({'gpu': 1})
    a = make_manager(worker_type='transcribe', resources=gpu, plugin_resources={'sleep': {'gpu': 1}})
    b = make_manager(worker_type='llm', resources=gpu, plugin_resources={'sleep': {'gpu': 1}})
    await asyncio.gather(a.start(), b.start())
    ja = await a.start_job('sleep', seconds=0.3)
    await started(a, ja)
    jb = await b.start_job('sleep', seconds=0.01)
    nb = await b.start_job('echo', text='b keeps working')             # b's worker is idle: needs no GPU
    await b.wait_for_job(nb.id, 10)
    assert nb.status == 'completed' and jb.status == 'pending'
    await b.wait_for_job(jb.id, 10)                                     # offered the GPU when a released it
    assert ts(jb.started_at) >= ts(ja.completed_at) and gpu.in_use == {'gpu': 0}
    with pytest.raises(ValueError, match='has no resource limits'):
        await make_manager().start_job('echo', text='x', resources={'gpu': 1})


async def test_time_limit_stops_cooperative_and_kills_stubborn(make_manager):
    m = make_manager(max_workers=1, cancel_grace_seconds=0.2, job_time_limit_seconds=20)
    await m.start()
    pid = worker_pids(m)[0]
    j = await m.start_job('sleep', seconds=30, time_limit=0.3)          # stops when asked: worker kept
    await m.wait_for_job(j.id, 10)
    assert j.status == 'failed' and j.error == 'timed out after 0.3 s' and worker_pids(m) == [pid]
    s = await m.start_job('stubborn', seconds=30, time_limit=0.3)       # ignores it: killed after the grace period
    await m.wait_for_job(s.id, 10)
    assert s.status == 'failed' and s.error.startswith('timed out after 0.3 s;') and 'killed' in s.error
    ok = await m.start_job('echo', text='next')                         # restarted; a timeout is not a failure
    await m.wait_for_job(ok.id, 10)
    assert ok.status == 'completed' and m.pool.slots[0].failures == 0
    with pytest.raises(ValueError, match='time_limit'): await m.start_job('echo', time_limit=0)


async def test_manager_default_time_limit(make_manager):
    m = make_manager(job_time_limit_seconds=0.3)
    j = await m.start_job('sleep', seconds=30)
    await m.wait_for_job(j.id, 10)
    assert j.status == 'failed' and j.error == 'timed out after 0.3 s'


async def test_transient_errors_retry_with_backoff_and_attempts(make_manager):
    m = make_manager(max_workers=1, retry_backoff_base_seconds=0.05, retry_backoff_max_seconds=0.1)
    with m.events.subscribe(prefix='demo:retrying') as sub:
        j = await m.start_job('flaky', failures=2, key='a', max_retries=2)
        first = await wait_event(sub, 'demo:retrying')
        await m.wait_for_job(j.id, 10)
    assert first['attempt'] == 1 and first['delay'] == 0.05
    assert j.status == 'completed' and j.result == {'runs': 3} and j.attempt == 3
    assert [(a['attempt'], a['kind']) for a in j.attempts] == [(1, 'transient'), (2, 'transient'), (3, None)]
    assert 'flaky failure 1 of 2' in j.attempts[0]['error'] and j.attempts[2]['error'] is None
    g = await m.start_job('flaky', failures=5, key='b', max_retries=1)
    await m.wait_for_job(g.id, 10)
    assert g.status == 'failed' and 'gave up after 2 attempts' in g.error and g.attempt == 2
    p = await m.start_job('reject', message='corrupt file', max_retries=3)
    await m.wait_for_job(p.id, 10)
    assert p.status == 'failed' and p.attempt == 1 and p.error == 'PermanentError: corrupt file'
    assert p.attempts[0]['kind'] == 'permanent'


async def test_cancel_while_waiting_to_retry(make_manager):
    m = make_manager(retry_backoff_base_seconds=30, retry_backoff_max_seconds=30)
    j = await m.start_job('flaky', failures=1, key='c', max_retries=1)
    with m.events.subscribe(prefix='demo:retrying') as sub:
        if not j.attempts: await wait_event(sub, 'demo:retrying')
    assert j.status == 'pending' and m.health()['waiting_to_retry'] == 1
    assert await m.cancel_job(j.id)
    assert j.status == 'cancelled' and 'waiting to retry' in j.error and m.health()['waiting_to_retry'] == 0


async def test_retry_on_worker_death_is_opt_in(make_manager):
    m = make_manager(max_workers=1, retry_backoff_base_seconds=0.01, retry_backoff_max_seconds=0.01)
    j = await m.start_job('crash', how='exit', code=7, retry_on_worker_death=True, max_retries=1)
    await m.wait_for_job(j.id, 20)
    assert j.status == 'failed' and j.attempt == 2 and len({a['worker_pid'] for a in j.attempts}) == 2
    assert all('exited unexpectedly with code 7' in a['error'] for a in j.attempts)
    once = await m.start_job('crash', how='exit', code=7, max_retries=3)   # not opted in: no retry
    await m.wait_for_job(once.id, 20)
    assert once.status == 'failed' and once.attempt == 1


async def test_invalid_parameters_rejected_at_submit_with_field_messages(make_manager):
    m = make_manager()
    with pytest.raises(ParameterError) as e:                             # declared as a dataclass
        await m.start_job('echo', text=5, loud=True)
    assert e.value.errors == {'text': 'must be str, got 5', 'loud': 'is not a known parameter (known: text)'}
    with pytest.raises(ParameterError) as e:                             # declared as JSON schema
        await m.start_job('sleep', seconds=-1)
    assert e.value.errors == {'seconds': 'must be >= 0'}
    assert m.get_all_jobs() == [] and not m.queued_job_ids()            # nothing recorded, nothing queued
    ok = await m.start_job('sleep', seconds=0)
    assert (await m.wait_for_job(ok.id, 10)).status == 'completed'
