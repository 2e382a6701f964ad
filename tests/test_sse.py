"The event hub over real HTTP: uvicorn on 127.0.0.1 with a free port, SSE read by httpx and by a raw socket."
import contextlib, json, signal, socket, time
from pathlib import Path
import httpx, psutil, pytest
from conftest import serving


@pytest.fixture
def sse_server():
    with contextlib.ExitStack() as stack:
        def start(process=False, **env):
            url, proc = stack.enter_context(serving(['-m', 'uvicorn', 'sse_app:app', '--app-dir', str(Path(__file__).parent),
                                                  '--host', '127.0.0.1', '--timeout-graceful-shutdown', '2', '--log-level', 'info'],
                                                 '/debug', env))
            return (url, proc) if process else url
        yield start


def events(resp):
    "(id, event, data) triples from an SSE response."
    eid = event = None
    data = []
    for line in resp.iter_lines():
        if line.startswith('id:'): eid = line[3:].strip()
        elif line.startswith('event:'): event = line[6:].strip()
        elif line.startswith('data:'): data.append(line[5:].strip())
        elif line == '' and event:
            yield eid, event, json.loads('\n'.join(data))
            eid, event, data = None, None, []


def until(pred, timeout=20, what="condition"):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end: raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_reconnect_with_last_event_id_gets_exactly_what_was_missed(sse_server):
    url = sse_server()
    with httpx.Client(timeout=30) as c:
        with c.stream('GET', url + '/events') as r:
            it = events(r)
            first = next(it)
            assert first[1] == 'snapshot'
            job = c.post(url + '/jobs', json={'plugin': 'generate_text', 'tokens': 30, 'delay': 0.03}).json()['id']
            seen = []
            for e in it:
                if e[2]['job_id'] == job: seen.append(e)
                if e[1] == 'chunk': break             # leave in the middle of the stream
        last = seen[-1][0]
        with c.stream('GET', url + '/events', headers={'Last-Event-ID': last}) as r:
            missed = []
            for e in events(r):
                missed.append(e)
                if e[1] == 'completed': break
    assert missed[0][1] != 'snapshot'
    n = int(last.rsplit('-', 1)[1])
    assert [int(e[0].rsplit('-', 1)[1]) for e in missed] == list(range(n + 1, n + 1 + len(missed)))  # no gap, no repeat
    text = ''.join(e[2]['data']['chunk'] for e in seen + missed if e[1] == 'chunk')
    assert missed[-1][2]['data']['status'] == 'completed' and text == missed[-1][2]['data']['result']['text']


def test_client_that_stops_reading_is_dropped(sse_server):
    url = sse_server(SEND_TIMEOUT='1')
    port = int(url.rsplit(':', 1)[1])
    s = socket.create_connection(('127.0.0.1', port))
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        until(lambda: httpx.get(url + '/debug').json()['subscribers'] == 1, what="the subscription")
        httpx.post(url + '/jobs', json={'plugin': 'stream_n', 'n': 20_000_000})   # megabytes of chunk events
        until(lambda: httpx.get(url + '/debug').json()['subscribers'] == 0, timeout=30, what="the slow client to be dropped")
    finally: s.close()


def test_a_thousand_connections_leave_nothing_behind(sse_server):
    url = sse_server()
    with httpx.Client(timeout=10) as c:
        with c.stream('GET', url + '/events') as r: next(events(r))  # sse-starlette starts one shutdown watcher per process
        until(lambda: c.get(url + '/debug').json()['subscribers'] == 0, what="the first subscription to end")
        base = c.get(url + '/debug').json()
        assert base['tasks'] <= 4, base
        for _ in range(1000):
            with c.stream('GET', url + '/events') as r:
                assert next(events(r))[1] == 'snapshot'
        until(lambda: c.get(url + '/debug').json() == base, what=f"subscribers and tasks back to {base}")


def test_streams_show_only_what_the_access_rule_allows(sse_server):
    url = sse_server()
    with httpx.Client(timeout=30) as c:
        def submit(who, tokens):
            return c.post(url + '/ui/api/jobs', json={'plugin': 'generate_text', 'params': {'tokens': tokens, 'delay': 0.01}},
                          headers={'x-user': who}).json()['id']
        with c.stream('GET', url + '/ui/api/events', headers={'x-user': 'bob'}) as bob_json, \
             c.stream('GET', url + '/ui/stream', headers={'x-user': 'bob'}) as bob_html:
            ann_job = submit('ann', 5)
            bob_job = submit('bob', 5)
            seen = []
            for e in events(bob_json):
                seen.append(e)
                if e[1] == 'completed' and e[2]['job_id'] == bob_job: break
            html = ''
            for line in bob_html.iter_lines():
                html += line
                if f'id="cjm-head-{bob_job}"' in html and 'completed' in html.rsplit(f'cjm-head-{bob_job}', 1)[1][:400]: break
    assert {e[2]['job_id'] for e in seen if e[2]['job_id']} == {bob_job}
    assert ann_job not in ''.join(json.dumps(e[2]) for e in seen)   # nor in health data (a worker's current job)
    assert ann_job not in html and bob_job in html


def test_uvicorn_shuts_down_promptly_with_streams_open(sse_server):
    url, proc = sse_server(process=True)
    with httpx.Client(timeout=30) as c, c.stream('GET', url + '/events') as r1, c.stream('GET', url + '/ui/stream') as r2:
        it1, it2 = events(r1), r2.iter_lines()  # kept: a dropped iterator closes its response
        assert next(it1)[1] == 'snapshot' and next(it2)
        c.post(url + '/jobs', json={'plugin': 'sleep', 'seconds': 60})
        until(lambda: c.get(url + '/debug').json()['subscribers'] == 2, what="both streams")
        workers = psutil.Process(proc.pid).children()
        t = time.monotonic()
        proc.terminate()
        assert proc.wait(10) in (0, -signal.SIGTERM)   # uvicorn re-raises the signal once it has shut down
        assert time.monotonic() - t < 8
    assert 'Application shutdown complete' in proc.output()  # the lifespan's end ran: hub closed, manager shut down
    _, alive = psutil.wait_procs(workers, timeout=5)  # workers (and multiprocessing's resource tracker) end with it
    assert workers and not alive, alive


def test_html_stream_always_starts_from_a_snapshot(sse_server):
    url = sse_server()
    with httpx.Client(timeout=30) as c:
        with c.stream('GET', url + '/events') as r:
            it = events(r)
            last = next(it)[0]                                  # a valid id: the JSON stream would resume from it
        with c.stream('GET', url + '/ui/stream', headers={'Last-Event-ID': last}) as r:
            first = ''
            for line in r.iter_lines():
                if line.startswith('data:'): first += line[5:]
                elif line == '' and first: break
    assert 'id="cjm-jobs"' in first and 'hx-swap-oob="innerHTML"' in first   # a page redraw, not a replay


@pytest.mark.parametrize('path', ['/ui/stream', '/ui/api/events'])
def test_two_hundred_streams_closed_at_once_leave_nothing_behind(sse_server, path):
    "200 clients, not reading while a job streams to them, close at once: subscribers and tasks go within send_timeout + 1 s."
    url = sse_server(SEND_TIMEOUT='3')
    port = int(url.rsplit(':', 1)[1])
    with httpx.Client(timeout=10) as c:
        with c.stream('GET', url + '/events') as r: next(events(r))  # sse-starlette's one shutdown watcher per process
        until(lambda: c.get(url + '/debug').json()['subscribers'] == 0, what="the first subscription to end")
        base = c.get(url + '/debug').json()
        socks = []
        try:
            for _ in range(200):
                s = socket.create_connection(('127.0.0.1', port))
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nx-user: ann\r\n\r\n".encode())
                socks.append(s)
            until(lambda: c.get(url + '/debug').json()['subscribers'] == 200, what="200 subscribers")
            r = c.post(url + '/ui/api/jobs', json={'plugin': 'ticks', 'params': {'count': 100_000, 'interval': 0.002}},
                       headers={'x-user': 'ann'})
            assert r.status_code == 201
            assert b'data:' in socks[0].recv(65536)  # events flow to them; nobody reads the rest
            time.sleep(0.5)
        finally:
            for s in socks: s.close()
        t = time.monotonic()
        until(lambda: (lambda d: d['subscribers'] == 0 and d['tasks'] <= base['tasks'])(c.get(url + '/debug').json()),
              timeout=3 + 1, what="subscribers and tasks of the closed streams to go")
        print(f"200 streams closed at once: cleaned up in {time.monotonic() - t:.2f} s")
