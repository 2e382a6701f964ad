"The README's demo command, over real HTTP and SSE (uvicorn on 127.0.0.1, a free port)."
import json, signal, time
import httpx, psutil, pytest
from conftest import gone, serving


@pytest.fixture
def demo_server():
    with serving(['-m', 'cjm_workers.demo.app'], '/jobs/api/health') as (url, p): yield url, p


def sse_events(resp):
    "Parse (event, payload) pairs from an SSE response stream of the JSON event hub."
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
        page = c.get('/jobs/').text  # the form offers the demo's plugins, not the test suite's
        assert '<option value="generate_text"' in page and 'value="worker_only"' not in page and 'value="record"' not in page
        with c.stream('GET', '/jobs/api/events') as resp:
            events = sse_events(resp)
            assert next(events)[0] == 'snapshot'
            job = c.post('/jobs/api/jobs', json={'plugin': 'generate_text', 'params': {'tokens': 8, 'delay': 0.01}}).json()
            text, seen = '', []
            for event, e in events:
                if e['job_id'] != job['id']: continue
                seen.append(event)
                if event == 'chunk': text += e['data']['chunk']
                if event == 'completed': break
            assert seen[0] == 'queued' and 'started' in seen and 'chunk' in seen
            assert text == e['data']['result']['text'] and len(text.split()) == 8
            slow = c.post('/jobs/api/jobs', json={'plugin': 'sleep', 'params': {'seconds': 60}}).json()
            for event, e in events:
                if event == 'started' and e['job_id'] == slow['id']: break
            assert c.post(f"/jobs/api/jobs/{slow['id']}/cancel").status_code == 202
            for event, e in events:
                if event == 'cancelled' and e['job_id'] == slow['id']: break
        assert c.post('/jobs/api/jobs', json={'plugin': 'nope'}).status_code == 400
        assert c.get(f"/jobs/api/jobs/{slow['id']}").json()['status'] == 'cancelled'
    pids = [ch.pid for ch in psutil.Process(proc.pid).children()]
    assert len(pids) >= 2
    proc.send_signal(signal.SIGTERM)  # uvicorn's shutdown runs the manager's shutdown
    proc.wait(15)
    end = time.monotonic() + 5
    while not all(gone(p) for p in pids) and time.monotonic() < end: time.sleep(0.05)
    assert all(gone(p) for p in pids)
