"""The manager's state machine without processes: a backend whose workers are objects the test drives by hand
(`backends.scripted`).

They prove the worker-backend seam (`backends.base`): everything the manager does with a worker goes through these
few methods, so a test can play the worker's part message by message (start, progress, result, a death) and check
each transition, in milliseconds."""
import asyncio, time
import pytest

from cjm_workers.backends.base import ExitKind, WorkerBackend
from cjm_workers.backends.scripted import ScriptedBackend
from cjm_workers.core.config import RestartPolicy, WorkerConfig
from cjm_workers.core.protocol import (WorkerRequest, WorkerRequestType, WorkerResponse, WorkerResponseType, WorkerResult,
                                       WorkerStreamChunk)
from cjm_workers.demo.plugins import DemoJobManager
from cjm_workers.core.errors import ParameterError
from cjm_workers.managers.base import WorkerStartError
from conftest import wait_until

PLUGINS = {'echo': {'streaming': False}, 'generate_text': {'streaming': True}, 'sleep': {'streaming': False}}

@pytest.fixture
async def fake():
    "A started DemoJobManager on a ScriptedBackend (one worker unless given), shut down at the end."
    made = []
    async def make(backend=None, **config):
        backend = backend or ScriptedBackend(PLUGINS)
        m = DemoJobManager(worker_config=WorkerConfig(**{'max_workers': 1, **config}), worker_backend=backend)
        made.append(m)
        await asyncio.wait_for(m.start(), 5)
        return m, backend
    try: yield make
    finally:
        for m in made: await asyncio.wait_for(m.shutdown(), 10)


def test_the_scripted_backend_fits_the_seam(): assert isinstance(ScriptedBackend(), WorkerBackend)


async def test_a_job_moves_through_its_states_as_the_worker_reports(fake):
    m, b = await fake()
    w = b.started[0]
    assert w.state == "idle" and m.health()["workers"][0]["node"] == "scripted"
    job = await m.start_job('echo', text='hi')
    req = w.execute()
    assert req.data == {'job_id': job.id, 'plugin_name': 'echo', 'params': {'text': 'hi'}, 'stream': True}
    assert job.status == 'pending' and w.state == "busy" and job.attempt == 1  # handed over, not begun
    w.say(WorkerResponseType.STARTED, {'job_id': job.id, 'started_at': time.time()})
    assert job.status == 'running' and job.started_at
    w.say(WorkerResponseType.PROGRESS, {'job_id': job.id, 'progress': 0.5, 'message': 'half'})
    assert (job.progress, job.status_message) == (0.5, 'half')
    w._on_message(w, WorkerResult(job.id, 'success', data={'text': 'hi'}))
    assert job.status == 'completed' and job.result == {'text': 'hi'} and w.state == "idle" and w.jobs_done == 1
    w._on_message(w, WorkerResult(job.id, 'error', error='late'))  # a late message changes nothing
    assert job.status == 'completed' and job.error is None


async def test_jobs_wait_in_priority_order_for_the_one_worker(fake):
    m, b = await fake(cancel_grace_seconds=0.05)
    w = b.started[0]
    first = await m.start_job('echo', text='1')
    low, high = await m.start_job('echo', text='low'), await m.start_job('echo', text='high', priority=5)
    assert m.queued_job_ids() == [high.id, low.id]
    # `low` was sent ahead to the busy worker before `high` came: the manager takes it back (the worker's answer comes
    # on the next turn of the loop); with the answer before or after the running job's result, `high` runs next
    w.result({}, job_id=first.id)
    await wait_until(lambda: m.runs.where(high.id) == 'running', 2, "the best waiting job to run")
    assert w.execute().data['job_id'] == high.id and m.runs.where(low.id) == 'held' and low.attempt == 0


async def test_a_cancel_of_a_plugin_that_cannot_notice_it_kills_its_worker_at_once(fake):
    m, b = await fake(cancel_grace_seconds=30)
    w = b.started[0]
    job = await m.start_job('echo', text='x')
    w.say(WorkerResponseType.STARTED, {'job_id': job.id, 'started_at': time.time()})
    cancel = asyncio.ensure_future(m.cancel_job(job.id))
    await wait_until(lambda: w.controls, 5, "the cancel request")
    assert [c.type for c in w.controls] == [WorkerRequestType.CANCEL] and w.run.stop.reason == 'cancel'
    w.say(WorkerResponseType.CANCELLING, {'job_id': job.id, 'can_stop': False})
    assert await asyncio.wait_for(cancel, 5) is True
    assert job.status == 'cancelled' and "does not check for cancellation" in job.error
    assert w.intended.kind is ExitKind.KILLED and w.intended.reason == 'cancel'
    await wait_until(lambda: len(b.started) == 2, 5, "the replacement worker")
    assert m.restart_count == 1  # replaced at once: a kill to cancel is no failure of the worker


async def test_a_time_limit_asks_then_kills_after_the_grace_period(fake):
    m, b = await fake(cancel_grace_seconds=0.05)
    w = b.started[0]
    job = await m.start_job('echo', text='x', time_limit=0.05)
    w.say(WorkerResponseType.STARTED, {'job_id': job.id, 'started_at': time.time()})
    await asyncio.wait_for(m.wait_for_job(job.id), 5)
    assert [c.type for c in w.controls] == [WorkerRequestType.CANCEL]
    assert job.status == 'failed' and job.error.startswith("timed out after 0.05 s; the plugin did not stop within 0.05 s")


async def test_a_worker_lost_mid_job_fails_the_job_and_its_slot_restarts(fake):
    m, b = await fake(restart_policy=RestartPolicy.BACKOFF, restart_backoff_base_seconds=0.01)
    w = b.started[0]
    job = await m.start_job('echo', text='x')
    w.say(WorkerResponseType.STARTED, {'job_id': job.id, 'started_at': time.time()})
    w.die(-9)
    await asyncio.wait_for(m.wait_for_job(job.id), 5)
    assert job.status == 'failed' and 'SIGKILL' in job.error and 'OOM' in job.error
    assert job.attempts[-1]['error'] == job.error
    await wait_until(lambda: len(b.started) == 2 and b.started[1].state == "idle", 5, "the restarted worker")
    assert m.restart_count == 1 and m.pool.slots[0].deaths == 1 and m.pool.slots[0].failures == 0


async def test_a_stream_arrives_in_order_and_ends_with_the_job(fake):
    m, b = await fake()
    w = b.started[0]
    job = await m.start_job('generate_text', prompt='a', tokens=3)
    got = []
    async def read():
        async for chunk in m.stream_job(job.id): got.append(chunk)
    reader = asyncio.ensure_future(read())
    w.say(WorkerResponseType.STARTED, {'job_id': job.id, 'started_at': time.time()})
    for c in ('a', ' b', ' c'): w._on_message(w, WorkerStreamChunk(job.id, c))
    w._on_message(w, WorkerResult(job.id, 'success', data={'streamed': True}))
    await asyncio.wait_for(reader, 5)
    assert got == ['a', ' b', ' c'] and job.result['text'] == 'a b c'


async def test_workers_that_cannot_start_make_start_raise_and_the_backend_is_closed(fake):
    b = ScriptedBackend(fail_start='no GPU found')
    with pytest.raises(WorkerStartError, match="no GPU found"): await fake(backend=b)
    assert len(b.started) == 1  # the next would fail the same way: no restarts


async def test_shutdown_stops_idle_workers_and_closes_the_backend(fake):
    m, b = await fake(backend=ScriptedBackend(obey_stop=False), shutdown_timeout_seconds=5)
    w = b.started[0]
    stopping = asyncio.ensure_future(m.shutdown())
    await wait_until(lambda: w.sent and w.sent[-1].type is WorkerRequestType.STOP, 5, "the stop request")
    assert any(r.type is WorkerRequestType.STOP for r in w.sent)
    w.die(0)  # it stops when asked
    await asyncio.wait_for(stopping, 5)
    assert b.closed and m.health()['state'] == 'STOPPED'


async def test_a_parameter_of_the_wrong_json_schema_type_is_refused_before_anything_is_recorded(fake):
    m, b = await fake()
    for bad, field, message in (({'seconds': 'ten'}, 'seconds', "must be of type number, got str"),
                                ({'seconds': True}, 'seconds', "must be of type number, got bool"),
                                ({'seconds': -1}, 'seconds', "must be >= 0")):
        with pytest.raises(ParameterError) as e: await m.start_job('sleep', **bad)
        assert e.value.errors == {field: message}
    assert not m.jobs and not b.started[0].sent[1:]  # nothing recorded, nothing sent (the first message is INIT)
    job = await m.start_job('sleep', seconds=0.5)
    assert b.started[0].execute().data['params'] == {'seconds': 0.5} and job.status == 'pending'
    b.started[0].result({})
    assert job.status == 'completed'


async def test_a_request_that_cannot_be_pickled_fails_its_job_with_the_reason(fake):
    m, b = await fake()
    job = await m.start_job('generate_text', prompt=lambda: 0)  # no declared parameters: known only once pickled
    assert job.status == 'failed' and job.error.startswith("job parameters cannot be sent to a worker")
    assert not any(r.type is WorkerRequestType.EXECUTE for r in b.started[0].sent)


async def test_a_cancel_reaches_a_job_waiting_to_retry_and_a_job_with_no_worker(fake):
    m, b = await fake(restart_policy=RestartPolicy.BACKOFF, restart_backoff_base_seconds=0.01)
    w = b.started[0]
    job = await m.start_job('echo', text='x', max_retries=2, retry_on_worker_death=True)
    w.started()
    w.die(-9)  # lost with its worker: it waits to be retried
    await wait_until(lambda: job.id in m.runs.retry_timers, 5, "the retry timer")
    assert await m.cancel_job(job.id) and job.error == "cancelled while waiting to retry (after attempt 1)"
    assert job.id not in m.runs.retry_timers and not await m.cancel_job(job.id)  # finished: nothing to cancel


async def test_the_journal_writes_each_job_as_it_was_when_handed_over():
    "The writer thread reads snapshots: a job changed while its batch is being written is written as it was."
    import threading, json
    from cjm_workers.core.jobs import BaseJob
    from cjm_workers.core.store import MemoryJobStore
    from cjm_workers.managers.journal import Journal

    class HeldStore(MemoryJobStore):
        "Its first write waits until the test lets it go."
        def __init__(self):
            super().__init__()
            self.entered, self.go = threading.Event(), threading.Event()
        def write(self, *args):
            if not self.entered.is_set():
                self.entered.set()
                assert self.go.wait(10)
            super().write(*args)

    store = HeldStore()
    store.open('units')
    j = Journal(store, 'units', flush_seconds=0.01)
    j.start()
    try:
        job = BaseJob('j1', 'echo', status='running', progress=0.25, output_chunks=['a', 'b'])
        j.job(job, ('echo', b'payload', ()))
        assert await asyncio.to_thread(store.entered.wait, 10)  # handed over: the thread is writing it
        job.status, job.progress, job.error = 'failed', 0.75, 'boom'  # what the loop does meanwhile
        job.output_chunks.append('c')
        store.go.set()
        assert await asyncio.to_thread(j.flush().wait, 10)
        row = store.get('units', 'j1')
        assert (row['status'], row['error'], json.loads(row['record'])['progress'], row['output']) == ('running', None, 0.25, 'ab')
        j.job(job)  # the next hand-over carries the change, and the output since
        assert await asyncio.to_thread(j.flush().wait, 10)
        row = store.get('units', 'j1')
        assert (row['status'], row['error'], json.loads(row['record'])['progress'], row['output']) == ('failed', 'boom', 0.75, 'abc')
    finally:
        store.go.set()
        assert await asyncio.to_thread(j.stop, 10)


async def test_terminal_states_are_final_whatever_arrives_late(fake):
    m, b = await fake()
    w = b.started[0]
    job = await m.start_job('echo', text='x')
    w.started(); w.result({'text': 'x'})
    late = await m.start_job('echo', text='y')  # the worker has moved on; messages about the first job are late
    w.result(error='late', job_id=job.id)
    w.progress(0.1, 'late', job_id=job.id)
    w.chunk('late', job_id=job.id)
    assert (job.status, job.error, job.progress, job.output_chunks) == ('completed', None, None, [])
    assert m._finish(job, 'failed', error='again') is False and job.status == 'completed'
    w.result({'text': 'y'})
    assert late.status == 'completed'


async def test_jobs_that_must_wait_for_an_idle_worker_are_never_sent_ahead(tmp_path):
    "A durable_start job (sent once the journal has it) and a job needing a resource wait in the queue, and so does every job behind them."
    b = ScriptedBackend(PLUGINS)
    m = DemoJobManager(worker_config=WorkerConfig(max_workers=1), worker_backend=b, job_store=str(tmp_path / 'jobs.db'),
                       resources={'gpu': 1})
    try:
        await asyncio.wait_for(m.start(), 5)
        w = b.started[0]
        first = await m.start_job('echo', text='1')
        durable = await m.start_job('echo', text='2', durable_start=True)
        behind = await m.start_job('echo', text='3')
        assert [m.runs.where(j.id) for j in (durable, behind)] == ['waiting', 'waiting'] and not w.held
        w.started(); w.result({'text': '1'})
        await wait_until(lambda: len(w.executes) == 2, 5, "the durable job's hand-over")  # once the journal has it
        assert m.runs.where(durable.id) == 'running' and m.runs.where(behind.id) == 'waiting'  # nothing goes ahead of it
        w.result({'text': '2'})
        gpu = await m.start_job('echo', text='4', resources={'gpu': 1})
        assert m.runs.where(behind.id) == 'running' and m.runs.where(gpu.id) == 'waiting'
        w.result({'text': '3'})
        assert m.runs.where(gpu.id) == 'running'
        w.result({'text': '4'})
        assert [j.status for j in (first, durable, behind, gpu)] == ['completed'] * 4
    finally: await asyncio.wait_for(m.shutdown(), 10)


async def test_a_job_cancelled_while_its_revoke_is_in_flight_ends_cancelled_and_is_not_queued_again(fake):
    "The race of a priority change, the job before it ending, and a cancel: the held job became current, was cancelled, then the worker's answer said it never started."
    m, b = await fake()
    w = b.started[0]
    first = await m.start_job('echo', text='1')
    low = await m.start_job('echo', text='low')
    await asyncio.sleep(0)                                      # `low` is sent ahead at the end of the turn
    high = await m.start_job('echo', text='high', priority=5)  # `low` is asked back; the answer comes on the next turn
    w.result({}, job_id=first.id)                               # meanwhile the job before it ends: `low` is current
    assert m.runs.where(low.id) == 'running' and low.status == 'pending'
    assert m.runs.cancel(low) is False                          # a current job: asked to stop (before the answer comes)
    await wait_until(lambda: low.is_terminal, 2, "the worker's answer")
    assert (low.status, low.error, low.attempt) == ('cancelled', 'cancelled before it started', 0)
    await wait_until(lambda: m.runs.where(high.id) == 'running', 2, "the next job")
    assert low.id not in m.queued_job_ids() and m.runs.where(low.id) is None


async def test_a_command_to_a_busy_worker_takes_back_its_held_job_first(fake):
    "reload_plugin waits only for the running job (as before jobs were sent ahead); the held job runs after it, with the new configuration."
    m, b = await fake()
    w = b.started[0]
    running, held = await m.start_job('echo', text='a'), await m.start_job('echo', text='b')
    w.started()
    await asyncio.sleep(0)  # jobs go ahead to a busy worker at the end of the turn
    assert m.runs.where(held.id) == 'held'
    reload = asyncio.ensure_future(m.reload_plugin('echo', {'model': 'new'}))
    await wait_until(lambda: any(r.type is WorkerRequestType.RELOAD for r in w.sent), 2, "the reload request")
    assert [c.type for c in w.controls] == [WorkerRequestType.REVOKE]  # the held job, taken back before the reload went
    await wait_until(lambda: m.runs.where(held.id) == 'held' and w.executes[-1].data['job_id'] == held.id and len(w.executes) == 3, 2,
                     "the held job to be sent again, behind the reload")
    order = [r.type for r in w.sent]
    assert order.index(WorkerRequestType.RELOAD) < len(order) - 1 and w.sent[-1].type is WorkerRequestType.EXECUTE
    rid = next(r.request_id for r in w.sent if r.type is WorkerRequestType.RELOAD)
    w.say(WorkerResponseType.RESPONSE, {'success': True, 'error': None, 'loaded': ['echo']}, request_id=rid)
    assert await asyncio.wait_for(reload, 2) is True
    w.result({'text': 'a'}); w.result({'text': 'b'})
    assert [running.status, held.status, held.attempt] == ['completed', 'completed', 1]
