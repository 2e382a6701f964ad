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
    from cjm_workers.backends.local import LocalWorkerHandle
    h = LocalWorkerHandle(0, 'w', None, None, None)
    msg = lambda text: pickle.dumps(WorkerResponse(WorkerResponseType.PROGRESS, {'job_id': 'j', 'message': text}))
    junk = pickle.dumps(WorkerResponse(WorkerResponseType.PROGRESS, {}))[:-3] + b'\x00\x00.'  # truncated: cannot load
    for part in (msg('before'), junk, msg('after')):
        for p in frame(part): h._rbuf += p
    got = h._frames(0)
    assert got[0].data['message'] == 'before' and got[1] is None and got[2].data['message'] == 'after'
    assert not h._rbuf  # nothing jams the front of the buffer
    h._rbuf += b''.join(bytes(p) for p in frame(msg('later')))
    assert h._frames(0)[0].data['message'] == 'later'


async def test_big_arguments_and_results_never_stall_the_loop(make_manager, stall_monitor):
    "A 100 MB argument never stalls the loop; a 50 MB result stalls it about one copy of itself (a str is one block)."
    import time
    m = make_manager(heartbeat_timeout_seconds=0)
    await m.start()
    arg, n_out = 'x' * (100 << 20), 50 << 20
    stalls = []
    for data, n in ((arg, 0), ('', n_out), (arg, n_out)):
        tries = []
        # the argument's bound is tight for this shared machine (the OS or a collection alone can take a few ms):
        # up to three tries, the least counts; a stall the code causes is in every try
        for _ in range(3 if n == 0 else 1):
            async with stall_monitor(at_exit=True) as mon:
                j = await m.start_job('big', data=data, n=n)
                await m.wait_for_job(j.id, 120)
            assert j.status == 'completed' and j.result['size'] == len(data) and len(j.result['text']) == n
            tries.append(mon.worst)
            if mon.worst < 0.025: break
        stalls.append(min(tries))
    t = time.perf_counter()
    copy = ''.join(['r' * (1 << 20)] * 50)  # the one copy a 50 MB str in this process cannot avoid
    floor = time.perf_counter() - t
    del copy
    print(f"worst loop stall: 100 MB argument {stalls[0] * 1e3:.1f} ms; 50 MB result {stalls[1] * 1e3:.1f} ms; both "
          f"{stalls[2] * 1e3:.1f} ms (one 50 MB copy here: {floor * 1e3:.1f} ms)")
    assert stalls[0] < 0.025, stalls       # was 348 ms (pickled on the loop); the target is 10 ms
    assert stalls[1] < 2 * floor + 0.03, (stalls, floor)  # was 236 ms; what is left is the final copy and freeing memory


async def test_pages_snapshots_and_events_carry_a_bounded_part_of_a_big_output(make_manager):
    import httpx
    from starlette.applications import Starlette
    from cjm_workers.web.hub import OUTPUT_CAP
    from cjm_workers.web.mount import mount_jobs
    m = make_manager()
    app = Starlette()
    jm = mount_jobs(app, m)
    sub = jm.hub.subscribe()
    chunks = []
    async def collect():
        async for e in sub:
            if e.type == 'chunk': chunks.append((e.data['offset'], len(e.data['chunk'])))
    collector = asyncio.create_task(collect())
    try:
        job = await m.start_job('stream_n', n=1_000_000)  # a million one-character chunks as fast as it can
        await m.wait_for_job(job.id, 60)
        assert len(job.output) == 1_000_000
        await wait_until(lambda: chunks and sum(chunks[-1]) == 1_000_000, 10, "the last chunk event")
        assert max(n for _, n in chunks) <= OUTPUT_CAP  # a flood's events carry its end; `offset` shows the gap
        assert all(o2 >= o1 + n1 for (o1, n1), (o2, _) in zip(chunks, chunks[1:]))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url='http://test') as c:
            d = (await c.get(f'/jobs/api/jobs/{job.id}')).json()
            assert len(d['output']) == OUTPUT_CAP and d['output_truncated'] == 1_000_000 - OUTPUT_CAP
            assert len((await c.get(f'/jobs/api/jobs/{job.id}/output')).text) == 1_000_000
            assert len((await c.get(f'/jobs/api/jobs/{job.id}/output?offset=999990')).text) == 10
            page = (await c.get('/jobs/')).text
            assert len(page) < OUTPUT_CAP + 50_000 and 'earlier characters (the whole output)' in page
    finally:
        collector.cancel()
        sub.close()
        jm.hub.close()


def test_big_results_stall_the_loop_under_10_ms_once_the_heap_holds_the_memory():
    "With glibc told to keep big blocks in its heap (MALLOC_MMAP_THRESHOLD_), a 50 MB result costs a copy of warm memory."
    import json, os, subprocess, sys
    from pathlib import Path
    here = Path(__file__).parent
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(here.parent), str(here)]),
           'MALLOC_MMAP_THRESHOLD_': str(1 << 32), 'MALLOC_TRIM_THRESHOLD_': str(1 << 32)}
    out = subprocess.run([sys.executable, str(here / 'big_results.py')], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    stalls = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"50 MB results with the heap kept: worst stalls {stalls} ms (the first warms the heap)")
    assert max(stalls[1:]) < 25, stalls  # the target is 10 ms: measured 8-15 ms here (most near 9-10); generous for a shared machine
