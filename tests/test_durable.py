"Durable jobs: the SQLite journal, recovery after a SIGKILLed app, single ownership, history, retention, failures."
import asyncio, gc, json, os, signal, subprocess, sys, textwrap, time
from datetime import datetime, timedelta, timezone
import pytest
from cjm_workers.core.store import SQLiteJobStore, StoreError
from cjm_workers.managers.journal import OUTPUT_CUT
from conftest import started, wait_event, wait_until

# a journal writing on the loop would stall a 10,000-job burst for 100 ms and more; the rest is this shared machine:
# on 2026-11-28 the same test of the commit before that day's changes measured 5-8 ms of excess, CI saw 10.5 ms once
# and a local run 15.2 ms once (best of three), so the bound is 25 ms: still a quarter of what it guards against
STALL_LIMIT = 0.025


async def test_every_transition_is_journaled(make_manager, tmp_path):
    path = tmp_path / 'jobs.db'
    m = make_manager(max_workers=1, journal_output_cap_chars=40, retry_backoff_base_seconds=0.01,
                     retry_backoff_max_seconds=0.01, job_store=path)
    text = await m.start_job('generate_text', tokens=30, delay=0)
    long = await m.start_job('stream_n', n=100)
    bad = await m.start_job('fail', message='nope')
    flaky = await m.start_job('flaky', failures=1, key='j', max_retries=1)
    primes = await m.start_job('count_primes', n=20_000)
    for j in (text, long, bad, flaky, primes): await m.wait_for_job(j.id, 20)
    assert await m.flush_journal()
    store = SQLiteJobStore(path)  # a second reader of the same file
    rows = {j.id: store.get('demo', j.id) for j in (text, long, bad, flaky, primes)}
    t = rows[text.id]
    assert t['status'] == 'completed' and t['worker_pid'] == text.worker_pid and t['started_at'] == text.started_at
    assert t['output'] == text.output[:40] + OUTPUT_CUT.format(cap=40)     # capped, with a marker
    assert json.loads(t['record'])['result']['text'] == text.output          # the result keeps all of it
    assert rows[long.id]['output'] == 'x' * 40 + OUTPUT_CUT.format(cap=40)
    assert rows[bad.id]['status'] == 'failed' and rows[bad.id]['error'] == 'ValueError: nope'
    assert 'ValueError: nope' in json.loads(rows[bad.id]['record'])['traceback']
    rec = json.loads(rows[flaky.id]['record'])
    assert rows[flaky.id]['attempt'] == 2 and [a['kind'] for a in rec['attempts']] == ['transient', None]
    p = json.loads(rows[primes.id]['record'])
    assert p['progress'] == 1.0 and p['status_message'].endswith('primes below 20,000')
    assert rows[primes.id]['plugin_name'] == 'count_primes'
    import sqlite3
    with sqlite3.connect(path) as c:  # the execute request, to run it again after a restart
        assert c.execute("SELECT length(payload) FROM jobs WHERE id = ?", (primes.id,)).fetchone()[0] > 50


async def test_a_quick_job_goes_to_the_journal_when_queued_and_when_done_only(make_manager, tmp_path):
    m = make_manager(max_workers=1, job_store=tmp_path / 'jobs.db')
    handling, on_message = [None], m._on_message  # which worker message the manager is handling
    def tracked(h, msg):
        handling[0] = type(msg).__name__
        try: on_message(h, msg)
        finally: handling[0] = None
    m._on_message = tracked  # before start: workers are given it then
    await m.start()
    handed = []
    job_of_journal = m._journal.job
    m._journal.job = lambda job, queued=None: (handed.append((job.status, handling[0])), job_of_journal(job, queued))
    job = await m.start_job('noop')
    await m.wait_for_job(job.id, 20)
    # a start reported with the result (the usual case for a no-op) is not a hand-over of its own; a worker held
    # up for more than its flush window may report the start separately, and that one is handed over
    assert [x for x in handed if x[0] != 'running' or x[1] != 'WorkerResponse'] == [('pending', None), ('completed', 'WorkerResult')]
    assert await m.flush_journal()
    row = SQLiteJobStore(tmp_path / 'jobs.db').get('demo', job.id)
    assert (row['status'], row['started_at'], row['worker_pid']) == ('completed', job.started_at, job.worker_pid)


async def test_shutdown_keeps_waiting_jobs_for_the_next_manager(make_manager, tmp_path):
    path = tmp_path / 'jobs.db'
    m = make_manager(max_workers=1, cancel_grace_seconds=0.2, job_store=path)
    blocker = await m.start_job('sleep', seconds=30)
    await started(m, blocker)
    waiting = await m.start_job('echo', text='after the deploy')
    await m.shutdown()
    assert waiting.status == 'cancelled' and blocker.status == 'cancelled'
    m2 = make_manager(max_workers=1, job_store=path)
    await m2.start()
    again = m2.get_job(waiting.id)
    await m2.wait_for_job(again.id, 20)
    assert again.status == 'completed' and again.result == {'text': 'after the deploy'}
    assert m2.get_job(blocker.id).status == 'cancelled'                     # it was cancelled, honestly


KILLED_APP = textwrap.dedent('''
    import asyncio, json, sys
    from cjm_workers.core.config import WorkerConfig
    from cjm_workers.demo.plugins import DemoJobManager

    async def main():
        m = DemoJobManager(worker_config=WorkerConfig(max_workers=2), job_store=sys.argv[1])
        await m.start()
        ids = {}
        ids['plain'] = (await m.start_job('sleep', seconds=60)).id
        ids['opted'] = (await m.start_job('generate_text', tokens=20, delay=0.05, retry_on_worker_death=True, max_retries=1)).id
        for name, prio in [('a', 0), ('b', 5), ('c', 0), ('d', 5)]:
            ids[name] = (await m.start_job('echo', text=name, priority=prio)).id
        while any(m.get_job(ids[k]).status != 'running' for k in ('plain', 'opted')): await asyncio.sleep(0.01)
        await m.flush_journal()
        print(json.dumps(ids), flush=True)
        await asyncio.sleep(3600)

    if __name__ == '__main__': asyncio.run(main())
''')


async def test_recovery_after_the_app_is_sigkilled(make_manager, tmp_path):
    path, script = tmp_path / 'jobs.db', tmp_path / 'app.py'
    script.write_text(KILLED_APP)
    app = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(app.stdout.readline), 60)
        ids = json.loads(line)
    finally:
        app.kill()
        app.wait(10)
    m = make_manager(max_workers=1, job_store=path)          # the lock died with the app: this one may take over
    with m.events.subscribe(prefix='demo:started') as sub:
        await m.start()
        order = [(await wait_event(sub, 'demo:started', 30))['job_id'] for _ in range(5)]
    plain, opted = m.get_job(ids['plain']), m.get_job(ids['opted'])
    assert plain.status == 'interrupted' and 'app stopped while the job was running' in plain.error
    assert order == [ids[k] for k in ('b', 'd', 'opted', 'a', 'c')]  # by priority, then in original order
    await m.wait_for_job(opted.id, 30)
    assert opted.status == 'completed' and opted.attempt == 2 and 'interrupted' in opted.attempts[0]['error']
    for k in 'abcd': assert (await m.wait_for_job(ids[k], 20)).result == {'text': k}


async def test_only_one_live_manager_owns_a_journal(make_manager, tmp_path):
    path = tmp_path / 'jobs.db'
    m = make_manager(job_store=path)
    await m.start()
    with pytest.raises(StoreError, match="owned by another live manager"): await make_manager(job_store=path).start()
    other = make_manager(worker_type='llm', job_store=path)   # another manager name in the same file is fine
    await other.start()
    code = ("import asyncio, sys; from cjm_workers.demo.plugins import DemoJobManager\n"
            "async def main(): await DemoJobManager(job_store=sys.argv[1]).start()\n"
            "if __name__ == '__main__': asyncio.run(main())")
    out = subprocess.run([sys.executable, '-c', code, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "owned by another live manager" in out.stderr  # e.g. a second uvicorn worker


async def test_history_paging_filters_and_finished_jobs_after_restart(make_manager, tmp_path):
    path = tmp_path / 'jobs.db'
    m = make_manager(max_workers=2, job_store=path)
    jobs = []
    for i in range(12):
        jobs.append(await m.start_job('echo', text=f'e{i}') if i % 3 else await m.start_job('fail', message=f'f{i}'))
    streamed = await m.start_job('generate_text', tokens=5, delay=0)
    for j in jobs + [streamed]: await m.wait_for_job(j.id, 20)
    await m.shutdown()
    m2 = make_manager(job_store=path)
    await m2.start()
    h = await m2.job_history(status='completed', plugin_id='echo', limit=3, offset=2)
    echoes = [j for j in reversed(jobs) if j.plugin_id == 'echo']
    assert h['total'] == 8 and [j.id for j in h['jobs']] == [j.id for j in echoes[2:5]]
    assert (await m2.job_history(status=['failed']))['total'] == 4
    cut = jobs[6].created_at
    assert (await m2.job_history(until=cut))['total'] == 6 and (await m2.job_history(since=cut))['total'] == 7
    old = m2.get_job(streamed.id)                              # not in memory: read from the journal
    assert old is not m2.jobs.get(streamed.id) and old.status == 'completed'
    assert old.output == streamed.output and old.result == streamed.result and old.worker_pid == streamed.worker_pid
    assert m2.get_job_result(streamed.id) == {'status': 'success', 'data': streamed.result} and m2.get_job_result('no-such-job') is None
    assert m2.get_job(jobs[0].id).error == 'ValueError: f0'


async def test_retention_and_clear_completed_jobs(make_manager, tmp_path):
    path = tmp_path / 'jobs.db'
    m = make_manager(job_store=path)
    jobs = [await m.start_job('echo', text=str(i)) for i in range(10)]
    for j in jobs: await m.wait_for_job(j.id, 20)
    await m.shutdown()
    m2 = make_manager(job_store=path, journal_max_jobs=4)      # by count: the newest four stay
    await m2.start()
    assert await m2.flush_journal()
    await wait_until(lambda: m2.get_job(jobs[5].id) is None, what="pruning")
    h = await m2.job_history()
    assert [j.id for j in h['jobs']] == [j.id for j in reversed(jobs[6:])]
    await m2.shutdown()
    time.sleep(0.05)
    m3 = make_manager(job_store=path, journal_retention_seconds=0.01)   # by age: all of them are older
    await m3.start()
    await wait_until(lambda: m3.get_job(jobs[9].id) is None, what="pruning by age")
    new = await m3.start_job('echo', text='new')
    await m3.wait_for_job(new.id, 20)
    assert m3.clear_completed_jobs() == 1
    assert await m3.flush_journal()
    assert m3.get_job(new.id) is None and (await m3.job_history())['total'] == 0


async def test_bad_journal_paths_fail_at_start(make_manager, tmp_path):
    garbage = tmp_path / 'garbage.db'
    garbage.write_bytes(b'not a database at all' * 200)
    with pytest.raises(StoreError, match='file is not a database'): await make_manager(job_store=garbage).start()
    with pytest.raises(StoreError, match='does not exist'): await make_manager(job_store='/nonexistent/jobs.db').start()
    with pytest.raises(StoreError, match='cannot create its lock file'): await make_manager(job_store='/proc/jobs.db').start()
    m = make_manager(job_store='/proc/jobs.db')
    with pytest.raises(StoreError): await m.start_job('echo', text='x')      # submitting says so too
    assert m.get_all_jobs() == []


async def test_full_journal_fails_loudly_without_losing_jobs(make_manager, tmp_path, caplog):
    store = SQLiteJobStore(tmp_path / 'jobs.db', max_size_mb=0.25)  # fills up like a small disk
    m = make_manager(max_workers=1, job_store=store)
    jobs = [await m.start_job('echo', text='x' * 20_000) for _ in range(40)]
    for j in jobs: await m.wait_for_job(j.id, 20)
    assert await m.flush_journal()
    journal = m.health()['journal']
    assert not journal['ok'] and 'full' in journal['error'] and journal['failed_batches'] >= 1
    assert any('journal demo' in r.message and 'failed' in r.message for r in caplog.records)
    assert all(j.status == 'completed' and j.result == {'text': 'x' * 20_000} for j in jobs)  # memory is intact
    ok = await m.start_job('echo', text='still running')
    assert (await m.wait_for_job(ok.id, 20)).status == 'completed'


@pytest.mark.local_only  # about the journal, not where workers run: on Ray (about 280 jobs/s here) 10,000 jobs a burst outlast the test's bound
async def test_burst_of_10000_submissions_does_not_stall_the_loop(make_manager, tmp_path, stall_monitor):
    m = make_manager(max_workers=2, job_store=tmp_path / 'jobs.db')
    await m.start()
    # a journal that blocked the loop would stall every burst; on this shared machine the OS alone sometimes stalls
    # one, so up to five bursts are measured and the best one counts
    # the interpreter's own collections are not the journal's doing: with 10,000s of jobs alive a full one takes
    # 30-110 ms here, in whichever callback allocates, so the longest is excused like our own submissions
    pauses, started = [], []
    def gc_pause(phase, info):
        if phase == 'start': started.append(time.perf_counter())
        elif started: pauses.append(time.perf_counter() - started.pop())
    gc.callbacks.append(gc_pause)
    excess = []
    try:
        for attempt in range(5):
            worst_submit = 0.0
            pauses.clear()
            async with stall_monitor() as mon:
                jobs = []
                for _ in range(100):
                    t = time.perf_counter()
                    for _ in range(100): jobs.append(await m.start_job('noop'))
                    worst_submit = max(worst_submit, time.perf_counter() - t)
                    await asyncio.sleep(0)
                for j in jobs: await m.wait_for_job(j.id, 60)
            assert all(j.status == 'completed' for j in jobs)
            # the loop's worst stall, less the longest stretch of our own 100 submissions in a row or of a collection
            worst_gc = max(pauses, default=0.0)
            excess.append(mon.worst - max(worst_submit, worst_gc))
            print(f"worst stall {mon.worst * 1e3:.1f} ms, longest run of 100 submissions {worst_submit * 1e3:.1f} ms, "
                  f"longest collection {worst_gc * 1e3:.1f} ms")
            if excess[-1] < STALL_LIMIT: break
    finally: gc.callbacks.remove(gc_pause)
    assert min(excess) < STALL_LIMIT, excess
    assert await m.flush_journal(30)
    assert (await m.job_history(status='completed', limit=1))['total'] == 10_000 * len(excess)


async def test_recovered_job_that_can_no_longer_run_fails_with_the_reason(make_manager, tmp_path):
    path = tmp_path / 'jobs.db'
    gpu = dict(resources={'gpu': 1}, plugin_resources={'sleep': {'gpu': 1}})
    m = make_manager(max_workers=1, cancel_grace_seconds=0.2, job_store=path, **gpu)
    blocker = await m.start_job('sleep', seconds=30)
    await started(m, blocker)
    waiting = await m.start_job('sleep', seconds=0.01)
    await m.shutdown()
    m2 = make_manager(job_store=path)                       # this app has no GPU limits any more
    await m2.start()
    j = m2.get_job(waiting.id)
    assert j.status == 'failed' and j.error.startswith('cannot run after the restart: needs resources')


def test_shutdown_without_a_loop_keeps_waiting_jobs_in_the_journal(tmp_path):
    from cjm_workers.core.config import WorkerConfig
    from cjm_workers.demo.plugins import DemoJobManager
    path = tmp_path / 'jobs.db'
    m = DemoJobManager(worker_config=WorkerConfig(max_workers=1), job_store=path)
    async def submit():
        blocker = await m.start_job('sleep', seconds=30)
        await started(m, blocker)
        return blocker, await m.start_job('echo', text='later')
    try: blocker, waiting = asyncio.run(submit())
    finally: m.shutdown()                                   # sync: the loop is gone
    assert waiting.status == 'cancelled'
    async def recover():
        m2 = DemoJobManager(worker_config=WorkerConfig(max_workers=1), job_store=path)
        try:
            await m2.start()
            return m2.get_job(blocker.id).status, (await m2.wait_for_job(waiting.id, 20)).result
        finally: await asyncio.wait_for(m2.shutdown(), 20)
    assert asyncio.run(recover()) == ('cancelled', {'text': 'later'})
