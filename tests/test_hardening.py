"""Hardening at the boundaries: what a worker sends that the manager cannot read, and what a config holds."""
import asyncio
import pytest
from conftest import wait_until


async def test_a_result_the_manager_cannot_unpickle_fails_its_job_and_the_worker_keeps_serving(make_manager):
    m = make_manager(heartbeat_timeout_seconds=0)  # no hang detection to fall back on
    bad = await m.start_job('worker_only')
    await m.wait_for_job(bad.id, 10)  # before the fix: pending forever (heartbeats off) or 60 s, then "unresponsive"
    assert bad.status == 'failed' and bad.error.startswith('result could not be unpickled in the manager: AttributeError')
    assert 'OnlyInWorkers' in bad.error
    after = await m.start_job('echo', text='next')
    await m.wait_for_job(after.id, 10)
    assert after.status == 'completed' and after.worker_pid == bad.worker_pid  # the same worker, still serving


def test_an_undecodable_frame_is_dropped_alone():
    "A frame that cannot be unpickled, between two good ones, is logged and dropped; the others arrive, the buffer is clear."
    import pickle
    from cjm_workers.core.protocol import WorkerResponse, WorkerResponseType, frame
    from cjm_workers.managers.pool import WorkerHandle
    h = WorkerHandle(0, 'w', None, None, None)
    msg = lambda text: pickle.dumps(WorkerResponse(WorkerResponseType.PROGRESS, {'job_id': 'j', 'message': text}))
    junk = pickle.dumps(WorkerResponse(WorkerResponseType.PROGRESS, {}))[:-3] + b'\x00\x00.'  # truncated: cannot load
    for part in (msg('before'), junk, msg('after')):
        for p in frame(part): h._rbuf += p
    got = h._frames(0)
    assert got[0].data['message'] == 'before' and got[1] is None and got[2].data['message'] == 'after'
    assert not h._rbuf  # nothing jams the front of the buffer
    h._rbuf += b''.join(bytes(p) for p in frame(msg('later')))
    assert h._frames(0)[0].data['message'] == 'later'
