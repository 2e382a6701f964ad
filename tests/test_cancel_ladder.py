"""The cancel ladder: flag; stop at the next chunk; kill at once when the plugin cannot notice; else grace, then kill."""
import asyncio, time
import pytest
from conftest import started, wait_event, wait_until


async def test_plain_plugin_that_never_checks_is_killed_at_once(make_manager):
    m = make_manager(cancel_grace_seconds=5.0)
    with m.events.subscribe() as sub:
        job = await m.start_job('stubborn', seconds=30)  # never looks at its cancellation state
        await started(m, job)
        pid = job.worker_pid
        t = time.monotonic()
        task = asyncio.create_task(m.cancel_job(job.id))
        ev = await wait_event(sub, 'demo:cancelling', 5, job_id=job.id)  # at once, before the job ends
        assert ev['cancel_requested_at'] and job.status == 'running'
        assert await task is True
    took = time.monotonic() - t
    assert job.status == 'cancelled' and 'does not check for cancellation' in job.error, job.error
    assert took < 2.0, took  # not the 5 s grace
    nxt = await m.start_job('echo', text='next')
    await m.wait_for_job(nxt.id, 30)
    assert nxt.status == 'completed' and nxt.worker_pid != pid


async def test_plugin_that_looked_gets_the_grace_period(make_manager):
    m = make_manager(cancel_grace_seconds=0.5)
    job = await m.start_job('stubborn', seconds=30, looks=True)  # looked once, so it might stop: it is given the grace
    await started(m, job)
    await asyncio.sleep(0.05)  # let it look before the cancel arrives
    t = time.monotonic()
    assert await m.cancel_job(job.id)
    took = time.monotonic() - t
    assert job.status == 'cancelled' and 'did not stop within 0.5 s' in job.error, job.error
    assert 0.45 < took < 5, took


async def test_a_result_after_an_accepted_cancel_is_kept_but_the_job_ends_cancelled(make_manager):
    m = make_manager(cancel_grace_seconds=5.0)
    job = await m.start_job('stubborn', seconds=0.4, looks=True)  # finishes within the grace period
    await started(m, job)
    await asyncio.sleep(0.05)
    assert await m.cancel_job(job.id) is True
    assert job.status == 'cancelled' and job.result == {'text': 'finished anyway'}
    assert 'finished before it could stop' in job.error
    assert m.get_job_result(job.id) == {'status': 'cancelled', 'error': job.error, 'data': {'text': 'finished anyway'}}


async def test_stream_that_never_checks_stops_at_the_next_chunk_and_keeps_its_worker(make_manager):
    m = make_manager(cancel_grace_seconds=5.0)
    job = await m.start_job('drip', count=1000, interval=0.05)
    await wait_until(lambda: len(job.output.split()) >= 3, 10, "a few chunks")
    pid = job.worker_pid
    t = time.monotonic()
    assert await m.cancel_job(job.id)
    took = time.monotonic() - t
    assert job.status == 'cancelled' and 'chunk boundary' in job.error
    assert took < 1.0, took  # one chunk interval (50 ms) and a little
    kept = job.output
    assert kept.startswith('0 1 2 ') and len(kept.split()) < 60
    nxt = await m.start_job('whoami')
    await m.wait_for_job(nxt.id, 30)
    assert nxt.worker_pid == pid and 'drip' in nxt.result['loaded']  # same warm worker, nothing reloaded
    assert job.output == kept


async def test_time_limit_of_a_plugin_that_never_checks_kills_at_once(make_manager):
    m = make_manager(cancel_grace_seconds=5.0)
    job = await m.start_job('stubborn', seconds=30, time_limit=0.3)
    t = time.monotonic()
    await m.wait_for_job(job.id, 10)
    assert job.status == 'failed' and 'timed out after 0.3 s' in job.error and 'does not check' in job.error, job.error
    assert time.monotonic() - t < 3.0


async def test_cancel_overrides_a_time_limit_stop_in_progress(make_manager):
    m = make_manager(cancel_grace_seconds=1.0)
    job = await m.start_job('stubborn', seconds=30, looks=True, time_limit=0.2)
    await started(m, job)
    with m.events.subscribe() as sub:
        await wait_until(lambda: any(h.run is not None and h.run.stop is not None and h.run.stop.reason == 'timeout' for h in m.pool.handles()), 5, "the time-limit stop")
        assert await m.cancel_job(job.id) is True
    assert job.status == 'cancelled', (job.status, job.error)


async def test_dashboard_shows_cancelling_until_the_job_ends(make_manager):
    from fastcore.xml import to_xml
    from cjm_workers.web.components import cancel_button, job_head, job_row
    m = make_manager(cancel_grace_seconds=0.6)
    job = await m.start_job('stubborn', seconds=30, looks=True)
    await started(m, job)
    await asyncio.sleep(0.05)
    task = asyncio.create_task(m.cancel_job(job.id))
    await wait_until(lambda: job.cancel_requested_at is not None, 5, "the cancel to be accepted")
    assert 'cancelling…' in to_xml(job_head(job)) and 'cancelling…' in to_xml(job_row(job))
    assert 'disabled' in to_xml(cancel_button(job)) and 'Cancelling…' in to_xml(cancel_button(job))
    await task
    assert job.status == 'cancelled' and 'cancelling…' not in to_xml(job_head(job))
