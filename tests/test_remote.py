"""Several web processes, one owner: `python -m cjm_workers serve` in a process of its own, `RemoteJobManager` and the
jobs CLI as its clients, over a Unix socket (and over TCP with a bearer token)."""
import asyncio, base64, contextlib, json, os, signal, socket, stat, subprocess, sys, time
from typing import Optional

import httpx
import pytest

from cjm_workers.core.errors import ParameterError, WorkerUnavailableError
from cjm_workers.remote import RemoteJobManager
from conftest import wait_event

FACTORY = 'cjm_workers.demo.plugins:demo_managers'


HERE = os.path.dirname(__file__)


def start_owner(*args, cwd, factory=FACTORY, env=None) -> subprocess.Popen:
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [HERE, os.environ.get('PYTHONPATH')])), **(env or {})}
    return subprocess.Popen([sys.executable, '-m', 'cjm_workers', 'serve', factory, '--drain-timeout', '5', '--log-level', 'warning', *args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)


async def until_serving(proc, transport=None, url='http://owner', headers=None, timeout=60.0):
    "Wait until the owner answers its health route (its managers started)."
    end = time.monotonic() + timeout
    async with httpx.AsyncClient(transport=transport, base_url=url, headers=headers or {}) as c:
        while True:
            if proc.poll() is not None: raise AssertionError(f"the owner exited with {proc.returncode}: {proc.stderr.read()}")
            try:
                if (await c.get('/jobs/api/health', timeout=2)).status_code == 200: return
            except httpx.TransportError: pass
            if time.monotonic() > end: raise AssertionError("the owner did not start serving")
            await asyncio.sleep(0.05)


async def until_running(rm, job_id, timeout=30.0):
    "Wait (bounded) until the owner says the job is running."
    end = time.monotonic() + timeout
    while (await rm.get_job(job_id)).status != 'running':
        if time.monotonic() > end: raise AssertionError(f"job {job_id} did not start")
        await asyncio.sleep(0.02)


def stop(proc, timeout=20) -> int:
    "SIGTERM the owner (only: its workers are its to stop) and wait for it; SIGKILL its whole session if it does not stop."
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError): os.kill(proc.pid, signal.SIGTERM)
        try: proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


@pytest.fixture
async def owner(tmp_path):
    "An owner serving the demo managers on a Unix socket; stopped (and its session killed if need be) at the end."
    path = str(tmp_path / 'owner.sock')
    proc = start_owner('--socket', path, cwd=tmp_path)
    try:
        await until_serving(proc, httpx.AsyncHTTPTransport(uds=path))
        yield proc, path
    finally: stop(proc)


async def test_a_remote_manager_submits_waits_streams_and_cancels(owner):
    proc, path = owner
    async with RemoteJobManager('demo', socket=path) as rm:
        with rm.events.subscribe() as sub:  # the owner's events, named as a local manager's
            await rm.start()
            job = await rm.start_job('echo', text='hi')
            assert job.status in ('pending', 'running', 'completed') and job.plugin_id == 'echo'
            ended = await wait_event(sub, 'demo:completed', 30, job_id=job.id)
            assert ended['result'] == {'text': 'hi'}
        done = await rm.wait_for_job(job.id, 30)
        assert (done.status, done.result) == ('completed', {'text': 'hi'})
        # a stream: what stream_job yields is the job's whole output, each character once
        streamed = await rm.start_job('generate_text', prompt='abc', tokens=40, delay=0.005)
        pieces = [p async for p in rm.stream_job(streamed.id)]
        final = await rm.get_job(streamed.id)
        assert final.status == 'completed' and len(pieces) > 1 and ''.join(pieces) == final.output
        # a cancel: True once the job has ended cancelled
        slow = await rm.start_job('sleep', seconds=30)
        await until_running(rm, slow.id)
        assert await rm.cancel_job(slow.id) is True
        assert (await rm.get_job(slow.id)).status == 'cancelled'
        assert await rm.cancel_job(slow.id) is False  # already ended, as a local manager says
        assert (await rm.health())['workers']
        owned = await rm.start_job('echo', text='mine', owner='ann')  # as BaseJobManager.start_job(owner=...)
        assert (await rm.get_job(owned.id)).owner == 'ann'


async def test_the_event_stream_resumes_with_last_event_id_after_a_drop(owner):
    "Events published while a client's stream was down are replayed when it comes back (not replaced by a snapshot)."
    _, path = owner
    async with RemoteJobManager('demo', socket=path) as rm, RemoteJobManager('demo', socket=path) as other:
        with rm.events.subscribe() as sub:
            await rm.start()
            first = await rm.start_job('echo', text='before')
            await wait_event(sub, 'demo:completed', 30, job_id=first.id)
            rm._events.cancel()  # the stream drops (as when a connection is cut), with the id of the last event seen
            with contextlib.suppress(asyncio.CancelledError): await rm._events
            missed = await other.start_job('echo', text='while it was down')
            await other.wait_for_job(missed.id, 30)
            await rm.start()  # back, with Last-Event-ID: the owner replays what came after it
            ended = await wait_event(sub, 'demo:completed', 30, job_id=missed.id)
            assert ended['result'] == {'text': 'while it was down'}


async def test_a_remote_manager_raises_what_a_local_one_does(owner):
    _, path = owner
    async with RemoteJobManager('demo', socket=path) as rm:
        with pytest.raises(ParameterError) as e: await rm.start_job('echo', text=5)
        assert 'text' in e.value.errors
        with pytest.raises(ValueError, match="unknown plugin"): await rm.start_job('no_such_plugin')
        assert await rm.get_job('no-such-job') is None
        with pytest.raises(KeyError): await rm.wait_for_job('no-such-job', 5)
        with pytest.raises(ValueError): await rm.set_job_priority('x', 'high')
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=path), base_url='http://owner/jobs') as c:
        job = (await c.post('/api/jobs', json={'plugin': 'sleep', 'params': {'seconds': 0.01}})).json()
        assert (await c.post(f"/api/jobs/{job['id']}/priority", json={'priority': 'high'})).status_code == 422
        assert (await c.post(f"/api/jobs/{job['id']}/priority", json={})).status_code == 400
        assert (await c.post(f"/api/jobs/{job['id']}/priority", json={'priority': 1, 'x': 2})).status_code == 400
        assert (await c.post("/api/jobs/nope/front")).status_code == 404
        assert (await c.get('/api/queue', params={'manager': 'nope'})).status_code == 404
    async with RemoteJobManager('demo', socket=path + '.nobody') as rm:
        with pytest.raises(WorkerUnavailableError, match="cannot be reached"): await rm.start_job('echo', text='hi')


async def test_priorities_and_queue_order_from_another_process(owner):
    _, path = owner
    async with RemoteJobManager('demo', socket=path) as rm:
        busy = [await rm.start_job('sleep', seconds=30) for _ in range(2)]  # both workers
        for b in busy:
            await until_running(rm, b.id)
        a, b, c = [await rm.start_job('echo', text=t) for t in 'abc']
        assert await rm.queued_job_ids() == [a.id, b.id, c.id]
        assert await rm.set_job_priority(c.id, 5) is True
        assert await rm.move_job_to_front(b.id) is True
        assert await rm.queued_job_ids() == [b.id, c.id, a.id]
        assert await rm.set_job_priority(busy[0].id, 1) is False  # running: no longer waiting
        for j in busy: await rm.cancel_job(j.id)
        for j in (a, b, c): assert (await rm.wait_for_job(j.id, 30)).status == 'completed'


async def test_a_web_process_killed_leaves_its_jobs_running(owner, tmp_path):
    _, path = owner
    client = ("import asyncio, sys\nfrom cjm_workers.remote import RemoteJobManager\n"
              "async def main():\n"
              f"    async with RemoteJobManager('demo', socket={path!r}) as rm:\n"
              "        j = await rm.start_job('sleep', seconds=1.0)\n"
              "        print(j.id, flush=True)\n"
              "        await rm.wait_for_job(j.id)\n"
              "asyncio.run(main())\n")
    web = subprocess.Popen([sys.executable, '-c', client], stdout=subprocess.PIPE, text=True)
    try:
        job_id = (await asyncio.wait_for(asyncio.to_thread(web.stdout.readline), 30)).strip()
        web.kill()  # the web process that submitted the job dies while it waits
        await asyncio.to_thread(web.wait, 10)
    finally:
        if web.poll() is None: web.kill()
    async with RemoteJobManager('demo', socket=path) as rm:
        assert (await rm.wait_for_job(job_id, 30)).status == 'completed'


def cli(path, *args):
    return subprocess.run([sys.executable, '-m', 'cjm_workers', 'jobs', '--socket', path, *args], capture_output=True, text=True, timeout=60)


async def test_the_jobs_cli_lists_shows_cancels_and_retries(owner):
    _, path = owner
    async with RemoteJobManager('demo', socket=path) as rm:
        done = await rm.start_job('echo', text='cli')
        await rm.wait_for_job(done.id, 30)
        slow = await rm.start_job('sleep', seconds=30)
        await until_running(rm, slow.id)
    out = await asyncio.to_thread(cli, path, 'list')
    assert out.returncode == 0 and done.id in out.stdout and slow.id in out.stdout, out.stderr
    out = await asyncio.to_thread(cli, path, 'show', done.id)
    assert out.returncode == 0 and json.loads(out.stdout)['result'] == {'text': 'cli'}
    out = await asyncio.to_thread(cli, path, 'cancel', slow.id)
    assert out.returncode == 0 and out.stdout.startswith(f"{slow.id} cancelled"), out.stderr
    out = await asyncio.to_thread(cli, path, 'retry', done.id)
    assert out.returncode == 0 and f"(retry of {done.id})" in out.stdout
    out = await asyncio.to_thread(cli, path, 'show', 'no-such-job')
    assert out.returncode == 1 and 'no such job' in out.stderr


async def test_the_owner_socket_is_private_and_sigterm_lets_running_jobs_finish(tmp_path):
    "SIGTERM: the owner stops taking requests, lets the running job finish (the journal says so), removes its socket."
    path, journal = str(tmp_path / 'owner.sock'), str(tmp_path / 'jobs.db')
    proc = start_owner('--socket', path, cwd=tmp_path, factory='remote_factory:managers', env={'CJM_TEST_JOURNAL': journal})
    try:
        await until_serving(proc, httpx.AsyncHTTPTransport(uds=path))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        async with RemoteJobManager('demo', socket=path) as rm:
            job = await rm.start_job('sleep', seconds=1.0)
            await until_running(rm, job.id)
        code = await asyncio.to_thread(stop, proc)
        assert code in (0, -signal.SIGTERM), proc.stderr.read()  # uvicorn re-raises the SIGTERM it handled, once it is done
        assert not os.path.exists(path)
    finally: stop(proc)
    from cjm_workers.core.store import SQLiteJobStore
    row = SQLiteJobStore(journal).get('demo', job.id)
    assert row['status'] == 'completed', row  # it ran to its end after the SIGTERM


async def test_tcp_needs_the_bearer_token(tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    bad = subprocess.run([sys.executable, '-m', 'cjm_workers', 'serve', FACTORY, '--port', str(port)], capture_output=True,
                         text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != 'CJM_WORKERS_TOKEN'})
    assert bad.returncode == 2 and 'needs a bearer token' in bad.stderr
    proc = start_owner('--port', str(port), '--token', 's3cret', cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        await until_serving(proc, url=url, headers={'Authorization': 'Bearer s3cret'})
        async with httpx.AsyncClient(base_url=url) as c: assert (await c.get('/jobs/api/health')).status_code == 401
        async with RemoteJobManager('demo', url=url, token='wrong') as rm:
            with pytest.raises(PermissionError): await rm.start_job('echo', text='x')
        async with RemoteJobManager('demo', url=url, token='s3cret') as rm:
            job = await rm.start_job('echo', text='over tcp')
            assert (await rm.wait_for_job(job.id, 30)).result == {'text': 'over tcp'}
    finally: stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


async def on_a_process(url, want=None, avoid=None, tries=400):
    "An HTTP client whose (kept-alive) connection is served by a web process that is `want`, or is not `avoid`; and that pid."
    for _ in range(tries):
        c = httpx.AsyncClient(base_url=url, timeout=30)
        pid = (await c.get('/whoami')).json()['pid']
        if (want is None or pid == want) and pid != avoid: return c, pid
        await c.aclose()
    raise AssertionError(f"no connection reached the web process wanted ({want=}, {avoid=})")


def start_web(app:str, owner_path:str, port:int, workers:int=1, env:Optional[dict]=None) -> subprocess.Popen:
    "`uvicorn tests/<app>` on 127.0.0.1:port, its web processes clients of the owner on owner_path."
    return subprocess.Popen([sys.executable, '-m', 'uvicorn', app, '--workers', str(workers), '--host', '127.0.0.1', '--port', str(port),
                             '--app-dir', HERE, '--log-level', 'warning'], env={**os.environ, 'CJM_TEST_OWNER': owner_path, **(env or {})},
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def stop_web(web:subprocess.Popen):
    with contextlib.suppress(ProcessLookupError): os.killpg(web.pid, signal.SIGTERM)
    try: web.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError): os.killpg(web.pid, signal.SIGKILL)
        web.wait(10)


async def until_web(web, url, processes:int, timeout=60.0):
    "Wait until `processes` distinct web processes have answered /whoami."
    seen, end = set(), time.monotonic() + timeout
    while len(seen) < processes:
        assert time.monotonic() < end and web.poll() is None, "the web processes did not all start"
        try:
            async with httpx.AsyncClient(base_url=url) as c: seen.add((await c.get('/whoami')).json()['pid'])
        except httpx.TransportError: await asyncio.sleep(0.1)


async def test_several_uvicorn_workers_share_one_owner(owner, tmp_path):
    "Submit through one web process, stream and cancel through another; the console of any shows every job; a web process killed leaves its job running; no web process runs a worker."
    _, path = owner
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    web = start_web('multi_web_app:app', path, port, workers=3)
    clients = []
    try:
        await until_web(web, url, 3)
        a, pid_a = await on_a_process(url); clients.append(a)
        b, pid_b = await on_a_process(url, avoid=pid_a); clients.append(b)
        # submitted through A, streamed through B: the whole output, live
        job = (await a.post('/submit', json={'plugin': 'drip', 'params': {'count': 30, 'interval': 0.01}})).json()
        assert job['pid'] == pid_a
        async with b.stream('GET', f"/stream/{job['id']}") as r:
            assert r.headers['x-pid'] == str(pid_b)
            text = ''.join([t async for t in r.aiter_text()])
        async with RemoteJobManager('demo', socket=path) as rm:
            final = await rm.wait_for_job(job['id'], 30)
            assert final.status == 'completed' and text == final.output and text
            # cancelled through B while it runs, submitted through A
            slow = (await a.post('/submit', json={'plugin': 'sleep', 'params': {'seconds': 30}})).json()
            await until_running(rm, slow['id'])
            assert (await b.post(f"/cancel/{slow['id']}")).json() == {'cancelled': True, 'pid': pid_b}
            # the console and API of any web process show every job (the owner's, passed through)
            listed = (await b.get('/jobs/api/jobs', params={'limit': 100})).json()
            assert {job['id'], slow['id']} <= {j['id'] for j in listed['jobs']}
            # the web process names a submission's owner; a browser cannot name it itself
            mine = (await b.post('/jobs/api/jobs', json={'plugin': 'echo', 'params': {'text': 'x'}}, headers={'x-user': 'bob'})).json()
            spoof = (await a.post('/jobs/api/jobs', json={'plugin': 'echo', 'params': {'text': 'y'}}, headers={'x-cjm-owner': 'eve'})).json()
            assert (mine['owner'], spoof['owner']) == ('bob', None)
            page = await b.get('/jobs/')
            assert page.status_code == 200 and 'text/html' in page.headers['content-type']
            async with b.stream('GET', '/jobs/api/events') as events:  # a live stream through the web process
                async for line in events.aiter_lines():
                    if line.startswith('event:'): break
            # no web process runs a worker: the plugins are loaded once, in the owner's workers
            for c in (a, b):
                assert (await c.get('/whoami')).json()['children'] == 0
            assert len((await rm.health())['workers']) == 2
            # a web process killed while its job runs: the job carries on
            left = (await a.post('/submit', json={'plugin': 'sleep', 'params': {'seconds': 1.0}})).json()
            os.kill(pid_a, signal.SIGKILL)
            assert (await rm.wait_for_job(left['id'], 30)).status == 'completed'
    finally:
        for c in clients:
            with contextlib.suppress(Exception): await c.aclose()
        stop_web(web)


async def test_an_owner_killed_and_started_again_recovers_from_its_journal(tmp_path):
    "SIGKILL the owner: started again on the same socket and journal, its queued job runs and its running ones end `interrupted`; a client's waits carry over."
    path, journal = str(tmp_path / 'owner.sock'), str(tmp_path / 'jobs.db')
    env = {'CJM_TEST_JOURNAL': journal}
    proc = start_owner('--socket', path, cwd=tmp_path, factory='remote_factory:managers', env=env)
    try:
        await until_serving(proc, httpx.AsyncHTTPTransport(uds=path))
        async with RemoteJobManager('demo', socket=path) as rm:
            running = [await rm.start_job('sleep', seconds=30) for _ in range(2)]  # both workers
            for j in running:
                await until_running(rm, j.id)
            queued = await rm.start_job('echo', text='after the restart')
            from cjm_workers.core.store import SQLiteJobStore
            store = SQLiteJobStore(journal)
            end = time.monotonic() + 30
            while store.get('demo', queued.id) is None:  # the journal has written it (its window is 50 ms)
                assert time.monotonic() < end, "the journal never wrote the queued job"
                await asyncio.sleep(0.02)
            waits = [asyncio.ensure_future(rm.wait_for_job(j.id, 60)) for j in (*running, queued)]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            proc = start_owner('--socket', path, cwd=tmp_path, factory='remote_factory:managers', env=env)
            await until_serving(proc, httpx.AsyncHTTPTransport(uds=path))
            done = await asyncio.gather(*waits)
            assert [j.status for j in done] == ['interrupted', 'interrupted', 'completed']
            assert done[2].result == {'text': 'after the restart'}
    finally: stop(proc)


def owners_on(path) -> list:
    "The owner processes serving on `path` (by their command line)."
    import psutil
    found = []
    for p in psutil.process_iter(['cmdline']):
        cmd = p.info['cmdline'] or []
        if 'serve' in cmd and path in cmd and any('cjm_workers' in c for c in cmd): found.append(p)
    return found


SPAWNING_CLIENT = """
import asyncio, sys
from cjm_workers.remote import RemoteJobManager
async def main():
    async with RemoteJobManager('demo', socket=sys.argv[1], spawn='cjm_workers.demo.plugins:demo_managers', timeout=60) as rm:
        job = await rm.start_job('echo', text=sys.argv[2])
        print((await rm.wait_for_job(job.id, 60)).result['text'], flush=True)
asyncio.run(main())
"""


async def test_spawn_elects_one_owner_and_elects_again_when_it_dies(tmp_path):
    "Three web processes start at once with spawn=: one owner is started, all three use it; killed, the next client starts another."
    path = str(tmp_path / 'owner.sock')
    def clients(tags):
        procs = [subprocess.Popen([sys.executable, '-c', SPAWNING_CLIENT, path, t], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for t in tags]
        return [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    try:
        outs = await asyncio.to_thread(clients, ['a', 'b', 'c'])
        assert [(o[0].strip(), o[2]) for o in outs] == [('a', 0), ('b', 0), ('c', 0)], [o[1][-2000:] for o in outs]
        first = owners_on(path)
        assert len(first) == 1  # one owner for the three of them
        first[0].kill()
        first[0].wait(10)
        outs = await asyncio.to_thread(clients, ['d'])
        assert (outs[0][0].strip(), outs[0][2]) == ('d', 0), outs[0][1][-2000:]
        second = owners_on(path)
        assert len(second) == 1 and second[0].pid != first[0].pid
    finally:
        for p in owners_on(path):
            with contextlib.suppress(Exception):
                os.killpg(p.pid, signal.SIGKILL)


async def test_a_web_process_fans_its_browsers_streams_out_of_one_upstream(owner):
    "Five browsers on one web process's event stream: one upstream connection at the owner, every event to each, each from its own snapshot."
    import psutil
    proc, path = owner
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    web = start_web('multi_web_app:app', path, port)
    owner_conns = lambda: len([c for c in psutil.Process(proc.pid).net_connections('unix') if not c.raddr and c.status != 'LISTEN'])
    streams = []
    try:
        await until_web(web, url, 1)
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            before = owner_conns()
            async def browser():
                got = []
                async with c.stream('GET', '/jobs/api/events') as r:
                    streams.append(r)
                    async for line in r.aiter_lines():
                        if line.startswith('event:'): got.append(line[6:].strip())
                        if line.startswith('data:') and '"completed"' in line and got and got[-1] == 'completed': return got
            tasks = [asyncio.ensure_future(browser()) for _ in range(5)]
            await wait_until_(lambda: len(streams) == 5)
            # the snapshots' own connections close; one shared upstream (not five) stays
            await wait_until_(lambda: owner_conns() - before <= 2, 10)
            opened = owner_conns() - before
            job = (await c.post('/submit', json={'plugin': 'echo', 'params': {'text': 'to all'}})).json()
            got = await asyncio.wait_for(asyncio.gather(*tasks), 30)
            assert all(g[0] == 'snapshot' and g[-1] == 'completed' for g in got), got
            assert opened <= 2, opened  # one shared upstream (not five), plus at most a snapshot's closing connection
            async with c.stream('GET', '/jobs/stream') as r:  # the console's HTML stream: a page redraw first, as from the owner
                first = ''
                async for line in r.aiter_lines():
                    if line.startswith('data:'): first += line[5:]
                    elif line == '' and first: break
            assert 'id="cjm-jobs"' in first and job['id'][-8:] in first
    finally: stop_web(web)


async def test_a_browser_that_stops_reading_is_dropped_by_its_web_process(owner):
    "A browser that stops reading a shared stream: after send_timeout its stream ends and its place in the fan-out is gone (events are not kept for it without end)."
    proc, path = owner
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    web = start_web('multi_web_app:app', path, port, env={'CJM_TEST_SEND_TIMEOUT': '1'})
    s, job = None, None
    try:
        await until_web(web, url, 1)
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            async def browsers(): return (await c.get('/whoami')).json()['browsers']
            async def until(want, timeout):
                end = time.monotonic() + timeout
                while await browsers() != want:
                    assert time.monotonic() < end, f"still {await browsers()} browsers on the shared streams, not {want}"
                    await asyncio.sleep(0.1)
            s = socket.create_connection(('127.0.0.1', port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET /jobs/api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
            await until(1, 30)                                   # it is on the shared stream, and then never reads
            job = (await c.post('/submit', json={'plugin': 'stream_n', 'params': {'n': 20_000_000}})).json()  # megabytes of events
            await until(0, 30)                                   # dropped: nothing is held for it any more
            assert web.poll() is None
            if job is not None: await c.post(f"/cancel/{job['id']}")
    finally:
        if s is not None: s.close()
        stop_web(web)


async def wait_until_(cond, timeout=30):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.02)


async def test_the_owners_access_rule_decides_for_the_person_each_web_process_names(tmp_path):
    "Access rules run in the owner: each web process names the signed-in person (identity=), the owner's rule decides; a browser's own claim is dropped; the app's own calls are trusted."
    path = str(tmp_path / 'owner.sock')
    proc = start_owner('--socket', path, '--access', 'remote_factory:only_their_own', cwd=tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    web, clients = None, []
    try:
        await until_serving(proc, httpx.AsyncHTTPTransport(uds=path))
        web = start_web('access_web_app:app', path, port, workers=2)
        await until_web(web, url, 2)
        a, pid_a = await on_a_process(url); clients.append(a)
        b, _ = await on_a_process(url, avoid=pid_a); clients.append(b)
        ann, bob, root = {'x-user': 'ann'}, {'x-user': 'bob'}, {'x-user': 'root'}
        # ann submits through web process A; through B she sees it, bob does not, an admin does
        job = (await a.post('/jobs/api/jobs', json={'plugin': 'sleep', 'params': {'seconds': 30}}, headers=ann)).json()
        assert job['owner'] == 'ann'
        assert (await b.get(f"/jobs/api/jobs/{job['id']}", headers=ann)).status_code == 200
        assert (await b.get(f"/jobs/api/jobs/{job['id']}", headers=bob)).status_code == 404
        assert (await b.get(f"/jobs/api/jobs/{job['id']}")).status_code == 404  # nobody signed in
        assert (await b.get(f"/jobs/api/jobs/{job['id']}", headers=root)).status_code == 200
        listed = lambda r: {j['id'] for j in r.json()['jobs']}
        assert job['id'] in listed(await b.get('/jobs/api/jobs', headers=ann))
        assert job['id'] not in listed(await b.get('/jobs/api/jobs', headers=bob))
        # a browser's own identity header is dropped: bob cannot claim to be an admin
        forged = base64.urlsafe_b64encode(json.dumps({'user': 'bob', 'role': 'admin'}).encode()).decode()
        assert (await b.get(f"/jobs/api/jobs/{job['id']}", headers={**bob, 'x-cjm-identity': forged})).status_code == 404
        # bob cannot cancel it; the job runs on
        assert (await a.post(f"/jobs/api/jobs/{job['id']}/cancel", headers=bob)).status_code == 404
        async with RemoteJobManager('demo', socket=path) as rm:  # the app's own calls: no person, trusted
            assert (await rm.get_job(job['id'])).status in ('pending', 'running')
            # live streams: bob's never mentions ann's job, ann's does; each browser's stream is its person's
            seen = {'ann': [], 'bob': []}
            async def watch(c, who):
                async with c.stream('GET', '/jobs/api/events', headers={'x-user': who}) as r:
                    async for line in r.aiter_lines():
                        if line.startswith('data:'): seen[who].append(line)
            ended = lambda who, job_id: any(job_id in line and '"completed"' in line for line in seen[who])
            watchers = [asyncio.ensure_future(watch(b, 'ann')), asyncio.ensure_future(watch(b, 'bob'))]
            try:
                await wait_until_(lambda: seen['ann'] and seen['bob'])  # both snapshots in
                echo_ann = (await a.post('/jobs/api/jobs', json={'plugin': 'echo', 'params': {'text': 'ann'}}, headers=ann)).json()
                await wait_until_(lambda: ended('ann', echo_ann['id']))
                # bob's next job ends after ann's: once his stream has it, it would have had hers
                echo_bob = (await a.post('/jobs/api/jobs', json={'plugin': 'echo', 'params': {'text': 'bob'}}, headers=bob)).json()
                await wait_until_(lambda: ended('bob', echo_bob['id']))
            finally:
                for w in watchers: w.cancel()
            assert any(echo_ann['id'] in line for line in seen['ann'])
            assert not any(echo_ann['id'] in line or job['id'] in line for line in seen['bob'])
            # ann cancels her own job through B
            assert (await b.post(f"/jobs/api/jobs/{job['id']}/cancel", headers=ann)).status_code == 202
            assert (await rm.wait_for_job(job['id'], 30)).status == 'cancelled'
    finally:
        for c in clients:
            with contextlib.suppress(Exception): await c.aclose()
        if web is not None: stop_web(web)
        stop(proc)


async def test_access_rules_are_refused_in_a_web_process_with_a_remote_manager(tmp_path):
    "mount_jobs(app, remote, access=...) says where the rule goes; identity= with local managers is refused too."
    from starlette.applications import Starlette
    from cjm_workers.web.mount import mount_jobs
    from cjm_workers.demo.plugins import DemoJobManager
    from cjm_workers.backends.scripted import ScriptedBackend
    remote = RemoteJobManager('demo', socket=str(tmp_path / 'owner.sock'))
    with pytest.raises(ValueError, match="serve --access"): mount_jobs(Starlette(), remote, access=lambda r, j, a: True)
    with pytest.raises(ValueError, match="identity= names the person"):
        mount_jobs(Starlette(), DemoJobManager(worker_backend=ScriptedBackend()), identity=lambda r: None)


def test_spawn_passes_serves_options_on(tmp_path):
    "spawn='factory --access ...': the options reach the owner it starts (here a rule that cannot be imported: the owner says so and exits)."
    from cjm_workers.remote import elect_owner
    path = str(tmp_path / 'owner.sock')
    with pytest.raises(RuntimeError, match="exited with 2"): elect_owner(path, f"{FACTORY} --access nowhere_at_all:rule", timeout=60)
    assert "cannot import 'nowhere_at_all'" in open(path + '.log').read()
