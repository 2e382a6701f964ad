"The README's demo command, over real HTTP and SSE (uvicorn on 127.0.0.1, a free port)."
import json, signal, socket, subprocess, sys, time
import httpx, psutil, pytest
from conftest import gone


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def demo_server():
    port = free_port()
    p = subprocess.Popen([sys.executable, '-m', 'cjm_workers.demo.app', '--port', str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f'http://127.0.0.1:{port}'
        end = time.monotonic() + 30
        while True:  # wait until it accepts connections (its startup includes spawning two workers)
            try:
                httpx.get(url + '/jobs.json', timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > end or p.poll() is not None: raise AssertionError("demo app did not start")
                time.sleep(0.1)
        yield url, p
    finally:
        kids = [c.pid for c in psutil.Process(p.pid).children(recursive=True)] if p.poll() is None else []
        p.send_signal(signal.SIGTERM)
        try: p.wait(15)
        finally:
            p.kill()
            for k in kids:
                try: psutil.Process(k).kill()
                except psutil.NoSuchProcess: pass


def sse_events(resp):
    "Parse (event, data) pairs from an SSE response stream."
    event, data = None, []
    for line in resp.iter_lines():
        if line.startswith('event:'): event = line[6:].strip()
        elif line.startswith('data:'): data.append(line[5:].strip())
        elif line == '' and event:
            yield event, json.loads('\n'.join(data))
            event, data = None, []


def test_demo_streams_a_job_and_cancels_another(demo_server):
    url, proc = demo_server
    with httpx.Client(base_url=url, timeout=httpx.Timeout(20)) as c:
        with c.stream('GET', '/events') as resp:
            events = sse_events(resp)
            assert next(events)[0] == 'snapshot'
            job = c.post('/jobs', json={'plugin': 'generate_text', 'params': {'tokens': 8, 'delay': 0.01}},
                         headers={'accept': 'application/json'}).json()
            text, seen = '', []
            for event, data in events:
                if data.get('job_id') != job['id'] and data.get('id') != job['id']: continue
                seen.append(event)
                if event == 'chunk': text += data['chunk']
                if event == 'completed': break
            assert seen[0] == 'queued' and 'started' in seen and 'chunk' in seen
            assert text == data['output'] == data['result']['text'] and len(text.split()) == 8
            slow = c.post('/jobs', json={'plugin': 'sleep', 'params': {'seconds': 60}}, headers={'accept': 'application/json'}).json()
            for event, data in events:
                if event == 'started' and data['id'] == slow['id']: break
            assert c.post(f"/jobs/{slow['id']}/cancel").status_code == 200
            for event, data in events:
                if event == 'cancelled' and data['id'] == slow['id']: break
        assert c.post('/jobs', json={'plugin': 'nope'}).status_code == 400
    pids = [ch.pid for ch in psutil.Process(proc.pid).children()]
    assert len(pids) >= 2
    proc.send_signal(signal.SIGTERM)  # uvicorn's shutdown runs the manager's shutdown
    proc.wait(15)
    end = time.monotonic() + 5
    while not all(gone(p) for p in pids) and time.monotonic() < end: time.sleep(0.05)
    assert all(gone(p) for p in pids)
