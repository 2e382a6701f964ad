"""The JSON API against its own OpenAPI document, fuzzed by Schemathesis on a real server: no 5xx, no response that
breaks the document, whatever the input."""
import time
from pathlib import Path
import httpx, pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)
from conftest import serving

FUZZ_EXAMPLES = 100  # per operation and generation mode; CI-sized
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _serve():
    return serving(['-m', 'uvicorn', 'api_app:app', '--app-dir', str(Path(__file__).parent), '--host', '127.0.0.1',
                  '--timeout-graceful-shutdown', '2'], '/jobs/api/health')


@pytest.fixture
def api():
    "A server of its own per test: the fuzzing fills the queue with generated jobs (sleeps of up to an hour)."
    with _serve() as (url, proc): yield url, proc


@pytest.fixture
def api_schema(api):
    url, _ = api
    return schemathesis.openapi.from_url(url + '/jobs/api/openapi.json').exclude(path_regex='/api/events$')


def test_api_never_errs_and_keeps_to_its_document(api_schema, api):
    "Every operation but the endless event stream, with generated valid and invalid input (positive and negative)."
    from hypothesis import given
    tried = {}
    for result in api_schema.get_all_operations():
        op = result.ok()
        @given(case=op.as_strategy())
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            tried[op.label] = tried.get(op.label, 0) + 1
            case.call_and_validate(checks=CHECKS)
        fuzz()
    # the operations that take input, each fuzzed at length (those without parameters have one request to make)
    assert all(tried.get(op, 0) >= 10 for op in ('GET /jobs/api/jobs', 'POST /jobs/api/jobs', 'GET /jobs/api/jobs/{job_id}',
               'GET /jobs/api/jobs/{job_id}/output', 'POST /jobs/api/jobs/{job_id}/cancel')), tried
    print(f"fuzzed {sum(tried.values())} requests over {len(tried)} operations: no server error, all conform")
    assert 'Traceback (most recent call last)' not in api[1].output()  # a server error's; the fuzzer may send the word itself


def test_hostile_inputs_get_4xx_with_a_field_message(api):
    url, proc = api
    with httpx.Client(base_url=url, timeout=30) as c:
        post = lambda body, **kw: c.post('/jobs/api/jobs', content=body, headers={'content-type': 'application/json'}, **kw)
        r = post(b'{"plugin": "sleep", "params": {"seconds": 0}, "priority": 1e999}')
        assert r.status_code == 400 and 'not valid JSON' in r.json()['error']
        r = post(b'{"plugin": "sleep", "params": {"seconds": 0}, "priority": 1.5}')
        assert r.status_code == 422 and r.json()['errors'] == {'priority': 'must be an integer, got 1.5'}
        r = post(b'{"plugin": "sleep", "params": {"seconds": 0}, "priority": 123456789012345678901234567890}')
        assert r.status_code == 422 and 'priority' in r.json()['errors']
        assert post(b'{"plugin": "echo", "params": ' + b'[' * 100 + b']' * 100 + b'}').status_code == 400   # nesting
        assert post(b'[' * 100000 + b']' * 100000).status_code == 400
        r = post(b'{"plugin": "echo", "params": {"text": "' + b'x' * 2_000_000 + b'"}}')
        assert r.status_code == 413
        # job options never slip in through params: they are the plugin's, untouched
        r = post(b'{"plugin": "fail", "params": {"seconds": 0, "time_limit": 0.3, "max_retries": 99, "retry_on_worker_death": true, "priority": 7}}')
        assert r.status_code == 201, r.text
        j = r.json()
        assert (j['time_limit'], j['max_retries'], j['retry_on_worker_death'], j['priority']) == (None, None, False, 0)
        assert j['metadata']['params'] == {'seconds': 0, 'time_limit': 0.3, 'max_retries': 99, 'retry_on_worker_death': True, 'priority': 7}
        r = post(b'{"plugin": "sleep", "params": {"seconds": 0.01}, "time_limit": 5, "priority": 2}')  # their own fields
        assert r.status_code == 201 and (r.json()['time_limit'], r.json()['priority']) == (5.0, 2)
        for q, what in (('status=bogus', 'unknown status'), ('since=yesterday', 'since must be an ISO 8601'),
                        ('until=tomorrow', 'until must be'), ('limit=1.5', 'limit')):
            r = c.get('/jobs/api/jobs?' + q)
            assert r.status_code == 400 and what in r.json()['error'], (q, r.text)
        assert c.get('/jobs/api/jobs/nope/output').status_code == 404
        for odd in ('%0A', 'x%0A', '%0Ax', '%0A/output'):  # newlines in ids: still the API's JSON 404, not the app's
            r = c.get('/jobs/api/jobs/' + odd)
            assert r.status_code == 404 and r.json() == {'error': 'no such job'}, (odd, r.text)
        end = time.monotonic() + 30
        while c.get(f"/jobs/api/jobs/{j['id']}").json()['status'] != 'failed':
            assert time.monotonic() < end, "the fail job did not end"
            time.sleep(0.02)
        metrics = c.get('/jobs/metrics')
        assert metrics.status_code == 200 and metrics.headers['content-type'].startswith('text/plain')
        assert 'cjm_jobs_finished_total{manager="demo",plugin="fail",status="failed"}' in metrics.text
        assert 'cjm_workers{manager="demo",state="RUNNING"} 1.0' in metrics.text
        assert c.get(f"/jobs/api/jobs/{j['id']}/output?offset=x").status_code == 400
    assert 'Traceback (most recent call last)' not in proc.output()
