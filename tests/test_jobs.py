"Job states, awaiting, streaming, progress and events, with real spawn workers."
import asyncio, time
from datetime import datetime, timezone
import pytest
from cjm_workers.core.events import EventBroadcaster
from cjm_workers.managers.base import BaseJobManager, BaseJob, TERMINAL_STATUSES
from conftest import wait_event, wait_until


async def test_states_pending_running_completed_with_utc_times(make_manager):
    m = make_manager(max_workers=1)
    await m.start()
    with m.events.subscribe() as sub:
        first = await m.start_job('sleep', seconds=0.3)
        second = await m.start_job('echo', text='hi')
        await wait_event(sub, 'demo:started', job_id=first.id)
        assert first.status == 'running' and first.started_at is not None
        # queued behind the first: pending, no start time, although submitted
        assert second.status == 'pending' and second.started_at is None
        done = await m.wait_for_job(second.id, timeout=10)
    assert done.status == 'completed' and done.result == {'text': 'hi'}
    for ts in (done.created_at, done.started_at, done.completed_at):
        assert datetime.fromisoformat(ts).tzinfo == timezone.utc
    assert datetime.fromisoformat(done.started_at) >= datetime.fromisoformat(first.completed_at)


async def test_wait_for_job_timeout_and_unknown(make_manager):
    m = make_manager()
    job = await m.start_job('sleep', seconds=5)
    with pytest.raises(TimeoutError): await m.wait_for_job(job.id, timeout=0.05)
    with pytest.raises(KeyError): await m.wait_for_job('nope')
    assert await m.cancel_job(job.id)


async def test_stream_live_late_subscriber_and_result_text(make_manager):
    m = make_manager()
    job = await m.start_job('generate_text', tokens=12, delay=0.02)
    live, arrivals = [], []
    async for piece in m.stream_job(job.id):
        live.append(piece)
        arrivals.append(job.status)
    assert 'running' in arrivals  # pieces arrived while the job ran, not all at the end
    late = [p async for p in m.stream_job(job.id)]  # subscribes after the end: gets everything
    assert ''.join(late) == ''.join(live) == job.output == job.result['text']
    assert len(job.result['text'].split()) == 12 and job.result['chunks'] == 12


async def test_progress_reported_and_published(make_manager):
    m = make_manager()
    with m.events.subscribe(prefix='demo:progress') as sub:
        job = await m.start_job('count_primes', n=300_000, report_every=10_000)
        await m.wait_for_job(job.id, 30)
        events = []
        while (e := sub.get_nowait()) is not None: events.append(e[1])
    assert job.progress == 1.0 and job.status_message == '25,997 primes below 300,000'
    fractions = [e['progress'] for e in events if e['job_id'] == job.id]
    assert len(fractions) >= 2 and fractions == sorted(fractions) and fractions[-1] == 1.0


async def test_every_transition_is_published(make_manager):
    class Recorder:  # an external broadcaster (e.g. an SSE adapter): async broadcast only
        def __init__(self): self.events = []
        async def broadcast(self, event_type, data): self.events.append((event_type, data))
    rec = Recorder()
    m = make_manager(event_broadcaster=rec, cancel_grace_seconds=0.2)
    await m.start()
    ok = await m.start_job('generate_text', tokens=3, delay=0)
    await m.wait_for_job(ok.id, 10)
    bad = await m.start_job('fail', message='nope')
    await m.wait_for_job(bad.id, 10)
    gone = await m.start_job('crash', how='exit', code=7)
    await m.wait_for_job(gone.id, 10)
    stop = await m.start_job('sleep', seconds=10)  # runs on the restarted worker
    await wait_until(lambda: ('demo:started', stop.id) in [(t, d.get('job_id')) for t, d in rec.events])
    await m.cancel_job(stop.id)
    await m.shutdown()
    names = [t for t, _ in rec.events]
    for n in ['worker_started', 'queued', 'started', 'progress', 'chunk', 'completed', 'failed', 'cancelled',
              'worker_died', 'worker_restarted']:
        assert f'demo:{n}' in names, n
    by_job = lambda j: [t.split(':')[1] for t, d in rec.events if d.get('job_id') == j.id]
    assert by_job(ok)[:2] == ['queued', 'started'] and by_job(ok)[-1] == 'completed'
    assert by_job(bad)[-1] == 'failed' and by_job(stop)[-1] == 'cancelled'
    died = next(d for t, d in rec.events if t == 'demo:worker_died' and d['exitcode'] == 7)
    assert 'code 7' in died['reason']
    completed = next(d for t, d in rec.events if t == 'demo:completed' and d['job_id'] == ok.id)
    assert completed['result']['text'] and completed['status'] == 'completed'


async def test_builtin_broadcaster_subscribe_unsubscribe():
    b = EventBroadcaster()
    got = []
    cb = b.subscribe(lambda t, d: got.append(t))
    sub = b.subscribe()
    await b.broadcast('x:a', {})
    b.unsubscribe(cb); sub.close()
    await b.broadcast('x:b', {})
    assert got == ['x:a'] and sub.get_nowait() == ('x:a', {}) and sub.get_nowait() is None
    assert not b.has_subscribers


def test_abstract_methods_are_enforced():
    class Incomplete(BaseJobManager):
        def create_job(self, plugin_id, **kw): return BaseJob('1', plugin_id)
        def get_worker_entry_point(self): return None
        def prepare_execute_request(self, job): return {}
    with pytest.raises(TypeError, match='extract_job_result'): Incomplete('x', None)


async def test_unpicklable_argument_fails_at_submit_and_result_fails_job(make_manager):
    m = make_manager()
    import threading
    job = await m.start_job('fail', message=threading.Lock())  # 'fail' declares no parameters: only pickling can object
    assert job.status == 'failed' and 'cannot be sent to a worker' in job.error and 'lock' in job.error
    assert job.worker_pid is None and not m.queued_job_ids()  # never queued, never reached a worker
    job2 = await m.start_job('unpicklable')
    await m.wait_for_job(job2.id, 10)
    assert job2.status == 'failed' and job2.error.startswith('result could not be pickled') and 'lock' in job2.error
    job3 = await m.start_job('echo', text='after')  # the worker is fine
    assert (await m.wait_for_job(job3.id, 10)).status == 'completed'


async def test_plugin_exception_fails_job_with_message_and_traceback(make_manager):
    m = make_manager()
    job = await m.start_job('fail', message='bad input')
    await m.wait_for_job(job.id, 10)
    assert job.status == 'failed' and job.error == 'ValueError: bad input' and 'Traceback' in job.traceback


async def test_request_queue_size_rejects_when_full(make_manager):
    m = make_manager(request_queue_size=2)
    await m.start()
    running = await m.start_job('sleep', seconds=5)
    with m.events.subscribe() as sub:
        await wait_event(sub, 'demo:started', job_id=running.id)
    await m.start_job('noop'); await m.start_job('noop')
    with pytest.raises(asyncio.QueueFull, match='request_queue_size=2'): await m.start_job('noop')


async def test_clear_and_listing(make_manager):
    m = make_manager()
    a = await m.start_job('echo', text='a')
    await m.wait_for_job(a.id, 10)
    b = await m.start_job('sleep', seconds=5)
    assert [j.id for j in m.get_all_jobs()] == [a.id, b.id]
    assert m.get_job_result(a.id) == {'status': 'success', 'data': {'text': 'a'}} and m.get_job('nope') is None
    assert m.get_job_result(b.id) is None  # not finished yet
    assert m.clear_completed_jobs() == 1 and m.get_job(a.id) is None and m.get_job(b.id) is b


async def test_external_broadcaster_gets_every_event_before_shutdown_returns(make_manager):
    class Slow:
        def __init__(self): self.events = []
        async def broadcast(self, event_type, data):
            await asyncio.sleep(0)  # an awaiting broadcaster (as an SSE adapter is)
            self.events.append(event_type)
    rec = Slow()
    m = make_manager(event_broadcaster=rec)
    jobs = [await m.start_job('echo', text=str(i)) for i in range(20)]
    await m.shutdown(drain=True)
    assert m._sink.pump_task.done()  # no task is left behind
    assert rec.events.count('demo:completed') == 20 and rec.events.count('demo:queued') == 20


async def test_quick_job_still_reports_its_start(make_manager):
    "A job that ends before its STARTED message is sent gets started_at from the result, and a 'started' event first."
    m = make_manager()
    await m.start()
    with m.events.subscribe() as sub:
        job = await m.start_job('noop')
        await m.wait_for_job(job.id, 10)
        events = []
        while (e := sub.get_nowait()) is not None: events.append(e[0])
    assert events == ['demo:queued', 'demo:started', 'demo:completed']
    assert datetime.fromisoformat(job.created_at) <= datetime.fromisoformat(job.started_at) <= datetime.fromisoformat(job.completed_at)


async def test_long_job_reports_running_before_it_ends(make_manager):
    m = make_manager()
    job = await m.start_job('sleep', seconds=0.5)
    with m.events.subscribe() as sub:
        await wait_event(sub, 'demo:started', job_id=job.id)
    assert job.status == 'running' and job.completed_at is None
    await m.wait_for_job(job.id, 10)


async def test_concurrent_starts_all_wait_for_ready_workers(make_manager):
    m = make_manager(max_workers=2)
    first = asyncio.create_task(m.start())
    await asyncio.sleep(0)  # the first call has begun spawning
    assert m.pool.slots and not first.done()
    await m.start()  # a second caller must also wait until the workers are ready
    assert [s.handle.state for s in m.pool.slots] == ['idle', 'idle']
    await first


async def test_megabyte_arguments_and_results_arrive_intact(make_manager):
    "Large frames cross the pipes in pieces (non-blocking partial writes, buffered reads) and arrive whole."
    m = make_manager(max_workers=2)
    texts = [''.join(chr(65 + (i * 7 + k) % 26) for k in range(1000)) * (5000 + i) for i in range(3)]  # ~5 MB each
    jobs = [await m.start_job('echo', text=t) for t in texts]
    for j, t in zip(jobs, texts):
        await m.wait_for_job(j.id, 30)
        assert j.status == 'completed' and j.result['text'] == t


async def test_log_tail_keeps_what_the_plugin_printed_and_logged(make_manager):
    m = make_manager(log_tail_lines=4)
    events = m.events.subscribe()
    job = await m.wait_for_job((await m.start_job('chatty', lines=5, text='say')).id, timeout=30)
    assert job.status == 'completed'
    # the last 4 lines: printed lines, then log records (INFO and up) with level and logger
    assert job.log_tail == ['say 3', 'say 4', 'INFO demo.chatty: printed 5 lines', 'WARNING demo.chatty: a warning with say']
    assert job.to_dict(output=True)['log_tail'] == job.log_tail and 'log_tail' not in job.to_dict()
    logged = [l for name, d in list(events._events) if name.endswith(":log") for l in d["lines"]]
    assert logged[-2:] == job.log_tail[-2:]
    quiet = await m.wait_for_job((await m.start_job('noop')).id, timeout=30)
    assert quiet.log_tail == []                                # nothing carries over between jobs
    failed = await m.wait_for_job((await m.start_job('fail', message='bad')).id, timeout=30)
    assert failed.log_tail == ['WARNING demo.fail: about to fail: bad']
    events.close()


async def test_log_tail_lines_zero_captures_nothing(make_manager):
    m = make_manager(log_tail_lines=0)
    job = await m.wait_for_job((await m.start_job('chatty', lines=2)).id, timeout=30)
    assert job.status == 'completed' and job.log_tail == []
