"""Held jobs (`prefetch_jobs`, managers.runs): a busy worker is sent its next job ahead, and users see nothing of it.

Each test drives real worker processes through what the issue promises: a held job is still `pending`; cancelling
it never disturbs the job its worker runs; priorities and move-to-front still decide what runs next; no job waits
behind a busy worker while another worker is idle; a held job lost with its worker runs elsewhere, its time limit
counted from its start. Jobs record the order they ran in by appending their id to a file (demo plugin `record`)."""
import asyncio, os, signal

import pytest

from conftest import started, wait_until


async def turn():
    "Let the loop finish its turn: jobs go ahead to busy workers once per turn, at its end (`Runs.dispatch_soon`)."
    await asyncio.sleep(0)


def ran(path) -> list:
    "The job ids `record` jobs wrote, in the order they ran."
    if not os.path.exists(path): return []
    with open(path) as f: return f.read().split()


async def test_a_held_job_is_pending_until_its_worker_begins_it(make_manager, tmp_path):
    m = make_manager(max_workers=1, worker_type="held-pending")
    await m.start()
    first = await m.start_job('sleep', seconds=30)
    await started(m, first)
    held = await m.start_job('record', path=str(tmp_path / 'ran'))
    await turn()
    assert m.runs.where(held.id) == 'held'  # sent to the busy worker ahead...
    h = m.runs.handle_of(first.id)
    assert (held.status, held.attempt, held.worker_pid, held.started_at) == ('pending', 0, None, None)  # ...still waiting
    health = m.health()
    assert health['queued'] == 1 and health['workers'][0]['next_jobs'] == [held.id]
    assert m.queued_job_ids() == [held.id]
    await m.cancel_job(first.id)  # a cooperative plugin: it stops, and the worker goes on to the held job
    await asyncio.wait_for(m.wait_for_job(held.id), 10)
    assert (held.status, held.attempt, held.worker_pid, first.status) == ('completed', 1, h.pid, 'cancelled')
    assert ran(tmp_path / 'ran') == [held.id]


async def test_cancelling_a_held_job_never_disturbs_the_job_its_worker_runs(make_manager, tmp_path):
    m = make_manager(max_workers=1, worker_type="held-cancel")
    await m.start()
    # a plugin that never checks for cancellation: a cancel that reached it would kill its worker at once
    running = await m.start_job('stubborn', seconds=1.0)
    await started(m, running)
    pid = running.worker_pid
    held = await m.start_job('record', path=str(tmp_path / 'ran'))
    await turn()
    assert m.runs.where(held.id) == 'held'
    assert await m.cancel_job(held.id) is True  # ended at once, like any job that had not started
    assert (held.status, held.error) == ('cancelled', 'cancelled before it started')
    await asyncio.wait_for(m.wait_for_job(running.id), 10)
    assert (running.status, running.result) == ('completed', {'text': 'finished anyway'})
    after = await m.start_job('record', path=str(tmp_path / 'ran'))
    await asyncio.wait_for(m.wait_for_job(after.id), 10)
    assert after.worker_pid == pid and m.health()['restarts'] == 0  # the same worker throughout
    assert ran(tmp_path / 'ran') == [after.id]  # the cancelled job never ran


def next_jobs(m) -> list:
    "The jobs the one worker holds, in the order it would run them."
    return m.health()['workers'][0]['next_jobs']


@pytest.mark.parametrize('prefetch', [1, -1])  # one held job; the default for a lone worker, up to 32
async def test_priorities_and_move_to_front_still_decide_what_runs_next(make_manager, tmp_path, prefetch):
    m = make_manager(max_workers=1, worker_type=f"held-order{prefetch}", prefetch_jobs=prefetch)
    await m.start()
    first = await m.start_job('sleep', seconds=30)
    await started(m, first)
    path = str(tmp_path / 'ran')
    a, b, c = [await m.start_job('record', path=path) for _ in range(3)]
    await turn()
    assert m.runs.where(a.id) == 'held' and next_jobs(m)[0] == a.id
    assert m.set_job_priority(c.id, 5)  # c now goes before the held job(s)
    assert m.queued_job_ids() == [c.id, a.id, b.id]
    await wait_until(lambda: next_jobs(m)[:1] == [c.id], 5, "the worker to give the held jobs back and be sent `c` first")
    assert a.status == 'pending' and m.runs.where(a.id) in ('waiting', 'held')
    assert m.set_job_priority(c.id, -1)  # a held job's own priority change counts too: c goes last
    await wait_until(lambda: next_jobs(m)[:1] == [a.id], 5, "the worker to give `c` back and hold `a` first")
    assert m.move_job_to_front(b.id)     # b before everything
    assert m.queued_job_ids() == [b.id, a.id, c.id]
    await wait_until(lambda: next_jobs(m)[:1] == [b.id], 5, "the worker to hold `b` first")
    await m.cancel_job(first.id)
    for j in (a, b, c): await asyncio.wait_for(m.wait_for_job(j.id), 10)
    assert ran(path) == [b.id, a.id, c.id]
    assert [j.attempt for j in (a, b, c)] == [1, 1, 1]  # given back and sent again is no attempt


async def test_a_lone_worker_holds_a_burst_and_a_late_urgent_job_still_runs_next(make_manager, tmp_path):
    m = make_manager(max_workers=1, worker_type="held-lone")  # the default for one worker: up to 32 held
    await m.start()
    first = await m.start_job('sleep', seconds=30)
    await started(m, first)
    path = str(tmp_path / 'ran')
    burst = [await m.start_job('record', path=path) for _ in range(50)]
    await turn()
    assert [m.runs.where(j.id) for j in burst[:3]] == ['held'] * 3 and len(next_jobs(m)) >= 16
    assert {j.status for j in burst} == {'pending'} and m.health()['queued'] == 50
    dropped = burst[5]
    assert await m.cancel_job(dropped.id) is True and dropped.error == 'cancelled before it started'
    urgent = await m.start_job('record', path=path, priority=9)
    front = await m.start_job('record', path=path)
    assert m.move_job_to_front(front.id)
    assert m.queued_job_ids()[:2] == [front.id, urgent.id]
    await wait_until(lambda: next_jobs(m)[:2] == [front.id, urgent.id], 5, "the held jobs to be given back and the two sent first")
    await m.cancel_job(first.id)  # a cooperative plugin: it stops, and the worker goes on to what it holds
    for j in burst + [urgent, front]: await asyncio.wait_for(m.wait_for_job(j.id), 20)
    rest = [j.id for j in burst if j is not dropped]
    assert ran(path) == [front.id, urgent.id] + rest  # each once, in queue order; the cancelled one never ran
    assert {j.attempt for j in burst if j is not dropped} == {1} and m.health()['restarts'] == 0


async def test_no_job_waits_behind_a_busy_worker_while_another_is_idle(make_manager, tmp_path):
    m = make_manager(max_workers=2, worker_type="held-idle")
    await m.start()
    long = await m.start_job('sleep', seconds=30)   # to the first worker
    short = await m.start_job('sleep', seconds=0.3)  # to the second
    await started(m, long); await started(m, short)
    assert long.worker_pid != short.worker_pid
    nxt = await m.start_job('record', path=str(tmp_path / 'ran'))
    await turn()
    assert m.runs.where(nxt.id) == 'held' and m.runs.held[nxt.id].worker is m.runs.handle_of(long.id)  # behind the long job
    await asyncio.wait_for(m.wait_for_job(nxt.id), 10)  # long before the long job could end
    assert (nxt.status, nxt.worker_pid, long.status) == ('completed', short.worker_pid, 'running')


async def test_a_held_job_lost_with_its_worker_runs_on_the_next_one(make_manager, tmp_path):
    m = make_manager(max_workers=1, worker_type="held-lost", cancel_grace_seconds=0.2)
    await m.start()
    for how in ('sigkill', 'blind cancel'):
        running = await m.start_job('stubborn', seconds=30)
        await started(m, running)
        held = await m.start_job('record', path=str(tmp_path / how))
        await turn()
        assert m.runs.where(held.id) == 'held'
        if how == 'sigkill': os.kill(running.worker_pid, signal.SIGKILL)
        else: await m.cancel_job(running.id)  # the plugin cannot notice: its worker is killed at once
        await asyncio.wait_for(m.wait_for_job(held.id), 15)
        assert running.status == ('failed' if how == 'sigkill' else 'cancelled')
        assert (held.status, held.attempt, held.attempts, held.worker_pid != running.worker_pid) == ('completed', 1, [], True)
        assert ran(tmp_path / how) == [held.id]


async def test_a_held_jobs_time_limit_counts_from_its_start(make_manager):
    m = make_manager(max_workers=1, worker_type="held-limit")
    await m.start()
    first = await m.start_job('sleep', seconds=1.0)
    await started(m, first)
    # held for about 1 s: a limit counted from the hand-over would end it 0.2 s into its run
    held = await m.start_job('sleep', seconds=0.5, time_limit=1.2)
    await turn()
    assert m.runs.where(held.id) == 'held'
    await asyncio.wait_for(m.wait_for_job(held.id), 10)
    assert held.status == 'completed', held.error


async def test_a_burst_on_one_worker_runs_each_job_once_in_order(make_manager, tmp_path):
    m = make_manager(max_workers=1, worker_type="held-burst", prefetch_jobs=4)
    await m.start()
    path = str(tmp_path / 'ran')
    jobs = [await m.start_job('record', path=path) for _ in range(300)]
    for j in jobs: await asyncio.wait_for(m.wait_for_job(j.id), 30)
    assert [j.status for j in jobs] == ['completed'] * 300 and {j.attempt for j in jobs} == {1}
    assert ran(path) == [j.id for j in jobs]  # first come, first served, each once


async def test_prefetch_jobs_0_hands_over_one_job_at_a_time(make_manager):
    m = make_manager(max_workers=1, worker_type="held-off", prefetch_jobs=0)
    await m.start()
    first = await m.start_job('sleep', seconds=30)
    await started(m, first)
    nxt = await m.start_job('noop')
    await turn()
    assert m.runs.where(nxt.id) == 'waiting' and m.health()['workers'][0]['next_jobs'] == []
    await m.cancel_job(first.id)
    await asyncio.wait_for(m.wait_for_job(nxt.id), 10)
    assert nxt.status == 'completed'
