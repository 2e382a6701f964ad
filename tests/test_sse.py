"The event hub over real HTTP: uvicorn on 127.0.0.1 with a free port, SSE read by httpx and by a raw socket."
import json, os, signal, socket, subprocess, sys, time
from pathlib import Path
import httpx, psutil, pytest
from test_demo_app import free_port


@pytest.fixture
def sse_server():
    def start(**env):
        port = free_port()
        p = subprocess.Popen([sys.executable, '-m', 'uvicorn', 'sse_app:app', '--app-dir', str(Path(__file__).parent),
                              '--host', '127.0.0.1', '--port', str(port), '--timeout-graceful-shutdown', '2', '--log-level', 'warning'],
                             env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(p)
        url = f'http://127.0.0.1:{port}'
        end = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + '/debug', timeout=1).raise_for_status()
                return url
            except httpx.HTTPError:
                if time.monotonic() > end or p.poll() is not None: raise AssertionError(f"server did not start: {p.stdout.read() if p.poll() is not None else ''}")
                time.sleep(0.1)
    started = []
    try: yield start
    finally:
        for p in started:
            kids = [c.pid for c in psutil.Process(p.pid).children(recursive=True)] if p.poll() is None else []
            p.send_signal(signal.SIGTERM)
            try: p.wait(15)
            finally:
                p.kill()
                for k in kids:
                    try: psutil.Process(k).kill()
                    except psutil.NoSuchProcess: pass


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
