"""The console's pages over HTTP: bounded with many jobs, paged from the journal, one page per job, access rules, escaping."""
import asyncio, re, time
import httpx, pytest
from starlette.applications import Starlette
from cjm_workers.managers.base import BaseJob
from cjm_workers.web.mount import mount_jobs


@pytest.fixture
async def console(make_manager, tmp_path):
    made = []
    async def make(access=None, owner=None, **config):
        m = make_manager(**config)
        app = Starlette()
        jm = mount_jobs(app, m, access=access, owner=owner)
        made.append(jm)
        await m.start()
        return m, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url='http://test')
    try: yield make
    finally:
        for jm in made: jm.hub.close()


async def test_overview_stays_bounded_with_thousands_of_jobs(console):
    m, c = await console(max_workers=2)
    jobs = [await m.start_job('noop') for _ in range(3000)]
    for j in jobs: await m.wait_for_job(j.id, 60)
    t = time.perf_counter()
    page = (await c.get('/jobs/')).text
    took = time.perf_counter() - t
    assert page.count('class="cjm-card') <= 20 and page.count('id="cjm-row-') == 50
    assert len(page) < 150_000 and 'All jobs, with filters' in page
    assert re.search(r'<td>3000</td>', page)  # the totals count every job in memory
    print(f"overview with 3,000 jobs in memory: {len(page) / 1000:.0f} KB in {took * 1e3:.0f} ms")


async def test_jobs_page_pages_and_filters_the_journal(console, tmp_path):
    m, c = await console(job_store=str(tmp_path / 'jobs.db'))
    ok = [await m.start_job('echo', text=str(i)) for i in range(120)]
    bad = [await m.start_job('fail') for _ in range(7)]
    for j in ok + bad: await m.wait_for_job(j.id, 60)
    await m.flush_journal()
    m.jobs.clear()  # out of memory (as after a restart): the pages read the journal
    r = await c.get('/jobs/jobs')
    assert r.status_code == 200 and r.text.count('id="cjm-row-') == 50 and '1–50 of 127' in r.text and 'older →' in r.text
    r = await c.get('/jobs/jobs?offset=100')
    assert r.text.count('id="cjm-row-') == 27 and '101–127 of 127' in r.text and '← newer' in r.text
    r = await c.get('/jobs/jobs?status=failed')
    assert r.text.count('id="cjm-row-') == 7 and 'of 7' in r.text
    r = await c.get(f'/jobs/jobs?q={ok[5].id}')
    assert r.text.count('id="cjm-row-') == 1 and ok[5].id in r.text
    assert (await c.get('/jobs/jobs?status=bogus')).status_code == 400
    assert (await c.get('/jobs/jobs?plugin=nothing')).text.count('No jobs match') == 1


@pytest.mark.parametrize('journal', [True, False])
async def test_jobs_page_filters_by_owner_and_time_and_sorts_by_run_time(console, tmp_path, journal):
    m, c = await console(max_workers=2, **({'job_store': str(tmp_path / 'jobs.db')} if journal else {}))
    slow = [await m.start_job('sleep', seconds=s, owner='ann') for s in (0.6, 0.05, 0.3)]
    quick = [await m.start_job('echo', text=str(i), owner='bob') for i in range(5)]
    for j in slow + quick: await m.wait_for_job(j.id, 60)
    old = BaseJob(id='0' * 32, plugin_id='echo', status='completed', owner='ann', created_at='2026-01-01T00:00:00+00:00',
                  started_at='2026-01-01T00:00:01+00:00', completed_at='2026-01-01T00:00:01.01+00:00')  # from long ago
    if journal:
        await m.flush_journal()
        await asyncio.to_thread(m.job_store.write, m.worker_type, [old], {old.id: ('echo', b'', None)}, [])
        m.jobs.clear()  # history from the journal only
    else: m.jobs = {old.id: old, **m.jobs}
    rows = lambda text: re.findall(r'id="cjm-row-([^"]+)"', text)
    r = await c.get('/jobs/jobs?owner=ann&sort=duration')
    assert r.status_code == 200
    assert rows(r.text)[:3] == [slow[0].id, slow[2].id, slow[1].id], "longest run first"
    assert set(rows(r.text)) == {j.id for j in slow} | {old.id}  # ann's only
    r = await c.get('/jobs/jobs?owner=bob')
    assert set(rows(r.text)) == {j.id for j in quick}
    r = await c.get('/jobs/jobs?owner=ann&range=24h')
    assert set(rows(r.text)) == {j.id for j in slow}
    api = (await c.get('/jobs/api/jobs', params={'owner': 'ann', 'sort': 'duration', 'limit': 2})).json()
    assert [j['id'] for j in api['jobs']] == [slow[0].id, slow[2].id] and api['total'] == 4
    assert (await c.get('/jobs/jobs?range=forever')).status_code == 400
    assert (await c.get('/jobs/api/jobs?sort=size')).status_code == 400


async def test_job_page_shows_everything_escaped(console):
    m, c = await console()
    evil = '<script>window.x=1</script>'
    j = await m.start_job('fail', message=evil)
    await m.wait_for_job(j.id, 30)
    r = await c.get(f'/jobs/jobs/{j.id}')
    assert r.status_code == 200 and j.id in r.text and 'Traceback' in r.text and 'Timings' in r.text
    assert evil not in r.text and '&lt;script&gt;window.x=1&lt;/script&gt;' in r.text
    assert 'sse-connect="/jobs/stream?job=' in r.text  # live while the job is in memory
    ok = await m.start_job('echo', text='done')
    await m.wait_for_job(ok.id, 30)
    r = await c.get(f'/jobs/jobs/{ok.id}')
    assert '"text": "done"' in r.text and 'Waited' in r.text and 'Result' in r.text
    assert (await c.get('/jobs/jobs/nope')).status_code == 404


async def test_pages_honour_the_access_rule(console):
    user = lambda req: req.headers.get('x-user')
    m, c = await console(access=lambda req, job, action: job.owner == user(req), owner=user)
    r = await c.post('/jobs/api/jobs', json={'plugin': 'echo', 'params': {'text': 'mine'}}, headers={'x-user': 'ann'})
    job = r.json()['id']
    await m.wait_for_job(job, 30)
    assert (await c.get(f'/jobs/jobs/{job}', headers={'x-user': 'bob'})).status_code == 404
    assert (await c.get(f'/jobs/jobs/{job}', headers={'x-user': 'ann'})).status_code == 200
    assert job not in (await c.get('/jobs/jobs', headers={'x-user': 'bob'})).text
    assert job not in (await c.get('/jobs/', headers={'x-user': 'bob'})).text
    assert job in (await c.get('/jobs/jobs', headers={'x-user': 'ann'})).text


async def test_actions_retry_clear_and_cancel_many_honour_the_access_rule(console):
    user = lambda req: req.headers.get('x-user')
    m, c = await console(access=lambda req, job, action: job.owner == user(req), owner=user, max_workers=2)
    ann, bob = {'x-user': 'ann'}, {'x-user': 'bob'}
    failed = (await c.post('/jobs/api/jobs', json={'plugin': 'fail', 'params': {'message': 'once'}}, headers=ann)).json()
    await m.wait_for_job(failed['id'], 30)
    assert (await c.post(f"/jobs/api/jobs/{failed['id']}/retry", headers=bob)).status_code == 404
    r = await c.post(f"/jobs/api/jobs/{failed['id']}/retry", headers=ann)
    assert r.status_code == 201, r.text
    again = r.json()
    assert again['retry_of'] == failed['id'] and again['owner'] == 'ann' and again['metadata']['params'] == {'message': 'once'}
    assert m.get_job(failed['id']).retried_as == again['id']
    page = (await c.get(f"/jobs/jobs/{failed['id']}", headers=ann)).text
    assert 'retried as' in page and 'cjm-retry' in page
    sleeps = [(await c.post('/jobs/api/jobs', json={'plugin': 'sleep', 'params': {'seconds': 30}}, headers=h)).json()['id']
              for h in (ann, ann, bob)]
    assert (await c.post(f'/jobs/api/jobs/{sleeps[0]}/retry', headers=ann)).status_code == 409   # not finished
    r = await c.post('/jobs/api/jobs/cancel', json={'plugin': 'sleep'}, headers=ann)
    assert r.status_code == 202 and sorted(r.json()['ids']) == sorted(sleeps[:2])            # only ann's
    for j in sleeps[:2]: assert (await m.wait_for_job(j, 30)).status == 'cancelled'
    assert m.jobs[sleeps[2]].status in ('pending', 'running')
    await m.wait_for_job(again['id'], 30)
    r = await c.post('/jobs/api/jobs/clear', headers=ann)
    assert r.status_code == 200 and r.json()['cleared'] == 4                                   # ann's finished ones
    assert sleeps[2] in m.jobs and failed['id'] not in m.jobs
    assert (await c.post('/jobs/api/jobs/cancel', json={'ids': [sleeps[2]]}, headers=bob)).json()['cancelling'] == 1
    assert (await m.wait_for_job(sleeps[2], 30)).status == 'cancelled'


async def test_stats_page_draws_rates_times_and_queues(console):
    m, c = await console(max_workers=2)
    jobs = [await m.start_job('echo', text='x') for _ in range(12)] + [await m.start_job('fail') for _ in range(4)]
    for j in jobs: await m.wait_for_job(j.id, 30)
    page = (await c.get('/jobs/stats')).text
    assert page.count('data-series="completed"') >= 1 and 'data-series="failed"' in page   # bars this minute
    assert re.search(r'<td>echo</td>\s*<td>12</td>\s*<td>12</td>\s*<td>100%</td>', page)
    assert re.search(r'<td>fail</td>\s*<td>4</td>\s*<td>0</td>\s*<td>0%</td>', page)
    assert 'jobs queued and running' in page


async def test_workers_page_shows_workers_and_how_earlier_ones_ended(console):
    m, c = await console()
    first = m.worker_process.pid
    crash = await m.start_job('crash', how='exit', code=7)
    await m.wait_for_job(crash.id, 30)
    ok = await m.start_job('echo', text='next')
    await m.wait_for_job(ok.id, 30)
    page = (await c.get('/jobs/workers')).text
    assert f'<td>{m.worker_process.pid}</td>' in page and 'CPU, last minutes' in page
    assert 'How earlier workers ended' in page and f'<td>{first}</td>' in page and 'exited unexpectedly with code 7' in page


async def test_every_page_escapes_what_jobs_carry(console):
    "A script in a job's parameters, error, result, output, log lines and owner is shown as text on every page."
    evil = '<script>window.x=1</script>'
    user = lambda req: req.headers.get('x-user')
    m, c = await console(owner=user, access=lambda req, job, action: job.owner == user(req))
    h = {'x-user': evil}
    ids = [(await c.post('/jobs/api/jobs', json={'plugin': p, 'params': params}, headers=h)).json()['id']
           for p, params in (('fail', {'message': evil}), ('echo', {'text': evil}), ('chatty', {'text': evil, 'lines': 2}),
                             ('generate_text', {'prompt': evil, 'tokens': 3, 'delay': 0}))]
    for j in ids: await m.wait_for_job(j, 30)
    pages = ['/jobs/', '/jobs/jobs', '/jobs/workers', '/jobs/stats'] + [f'/jobs/jobs/{j}' for j in ids]
    for path in pages:
        r = await c.get(path, headers=h)
        assert r.status_code == 200 and '<script>window' not in r.text, path
    assert '&lt;script&gt;window.x=1&lt;/script&gt;' in (await c.get(f'/jobs/jobs/{ids[0]}', headers=h)).text
