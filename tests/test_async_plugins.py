"""Async plugins: coroutine methods and async generators run on one event loop per worker, and cancel at any await."""
import asyncio, contextlib, time
import pytest
from conftest import started, wait_until
from cjm_workers.demo.plugins import AsyncDemoJobManager


@pytest.fixture
def async_manager(make_manager):
    return lambda **config: make_manager(cls=AsyncDemoJobManager, **config)


async def test_async_plugin_runs_on_one_loop_that_outlives_its_jobs(async_manager):
    m = async_manager()
    a = await m.start_job('async_echo', text='one')
    await m.wait_for_job(a.id, 30)
    s = await m.start_job('async_tokens', count=3, interval=0.001)  # uses the client opened by the first load
    await m.wait_for_job(s.id, 30)
    b = await m.start_job('async_echo', text='two')
    await m.wait_for_job(b.id, 30)
    assert (a.status, s.status, b.status) == ('completed',) * 3, (a.error, s.error, b.error)
    assert a.result['text'] == 'one' and b.result['text'] == 'two'
    assert a.result['loop'] == b.result['loop'] and a.result['client'] == b.result['client']  # kept between jobs
    assert b.result['client_calls'] == a.result['client_calls'] + 3 and a.worker_pid == b.worker_pid


async def test_async_stream_from_an_async_source(async_manager):
    m = async_manager()
    job = await m.start_job('async_tokens', count=8, interval=0.005)
    pieces = [p async for p in m.stream_job(job.id)]
    await m.wait_for_job(job.id, 30)
    assert job.status == 'completed' and len(job.output.split()) == 8 and ''.join(pieces) == job.output == job.result['text']


async def test_progress_and_cancellation_state_from_async_code(async_manager):
    m = async_manager()
    seen = []
    with m.events.subscribe(prefix='async:progress') as sub:
        job = await m.start_job('async_progress', steps=4)
        await m.wait_for_job(job.id, 30)
        while (e := sub.get_nowait()) is not None: seen.append(e[1]['progress'])
    assert job.status == 'completed' and job.progress == 1.0 and job.result == {'steps': 4, 'cancelled_seen': False}
    assert seen and seen[-1] == 1.0


async def test_awaiting_plugin_is_cancelled_at_its_await_and_keeps_its_worker(async_manager):
    m = async_manager(cancel_grace_seconds=5.0)
    job = await m.start_job('async_sleep', seconds=60)  # never checks: awaits a long sleep
    await started(m, job)
    pid = job.worker_pid
    t = time.monotonic()
    assert await m.cancel_job(job.id) is True
    took = time.monotonic() - t
    assert job.status == 'cancelled' and 'CancelledError' in job.error, job.error
    assert took < 0.5, took  # < 50 ms is the target (bench/run.py); generous here for a shared machine
    nxt = await m.start_job('async_echo', text='after')
    await m.wait_for_job(nxt.id, 30)
    assert nxt.status == 'completed' and nxt.worker_pid == pid  # cancelled, not killed


async def test_async_stream_cancel_stops_at_an_await(async_manager):
    m = async_manager(cancel_grace_seconds=5.0)
    job = await m.start_job('async_tokens', count=10_000, interval=0.02)
    await wait_until(lambda: len(job.output.split()) >= 3, 10, "some tokens")
    pid = job.worker_pid
    assert await m.cancel_job(job.id)
    kept = job.output
    assert job.status == 'cancelled' and len(kept.split()) >= 3
    nxt = await m.start_job('async_echo', text='x')
    await m.wait_for_job(nxt.id, 30)
    assert nxt.worker_pid == pid and job.output == kept


async def test_async_reload_and_unload(async_manager):
    m = async_manager()
    await m.start()
    assert await m.reload_plugin('async_echo', {'model': 'm2'}) is True
    assert await m.unload_plugin('async_echo') is True
    job = await m.start_job('async_echo', text='reloaded on demand')
    await m.wait_for_job(job.id, 30)
    assert job.status == 'completed'
