"The README's examples run as written."
import pathlib, re, subprocess, sys


def test_quickstart_runs(tmp_path):
    readme = (pathlib.Path(__file__).parent.parent / 'README.md').read_text()
    module, script = re.findall(r"```python\n(.*?)```", readme, re.S)[:2]
    (tmp_path / 'myapp').mkdir()
    (tmp_path / 'myapp' / '__init__.py').write_text('')
    (tmp_path / 'myapp' / 'transcription.py').write_text(module)
    (tmp_path / 'main.py').write_text(script)
    out = subprocess.run([sys.executable, 'main.py'], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    streamed, summary = out.stdout.split('\n', 1)
    assert streamed.strip() == 'streamed one word at a time'
    assert summary.split()[:1] == ['completed'] and summary.split()[-1] == '1.0'


def run_printing_example(tmp_path, index, timeout=90):
    "Run the README's python block `index` as main.py; return (what it printed, what the README says it prints)."
    readme = (pathlib.Path(__file__).parent.parent / 'README.md').read_text()
    script = re.findall(r"```python\n(.*?)```", readme, re.S)[index]
    printed = re.search(r"prints\n\n```\n(.*?)```", readme.split(script, 1)[1], re.S).group(1)
    (tmp_path / 'main.py').write_text(script)
    out = subprocess.run([sys.executable, 'main.py'], cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout, printed


def test_scheduling_example_prints_what_the_readme_says(tmp_path):
    got, printed = run_printing_example(tmp_path, 2)
    assert got == printed


def test_durable_example_prints_what_the_readme_says(tmp_path):
    readme = (pathlib.Path(__file__).parent.parent / 'README.md').read_text()
    script = re.findall(r"```python\n(.*?)```", readme, re.S)[3]
    printed = re.search(r"prints `(.*?)`", readme.split(script, 1)[1]).group(1)
    (tmp_path / 'main.py').write_text(script)
    out = subprocess.run([sys.executable, 'main.py', str(tmp_path / 'jobs.db')], cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == printed


def test_dashboard_example_scopes_jobs_by_session_user(tmp_path):
    import httpx
    from conftest import serving
    readme = (pathlib.Path(__file__).parent.parent / 'README.md').read_text()
    script = re.findall(r"```python\n(.*?)```", readme, re.S)[4]
    (tmp_path / 'app.py').write_text(script)
    with serving(['-m', 'uvicorn', 'app:app', '--app-dir', str(tmp_path), '--host', '127.0.0.1', '--timeout-graceful-shutdown', '2'],
                 '/jobs/api/health') as (url, _):
        with httpx.Client(base_url=url, timeout=30, follow_redirects=True) as ann, httpx.Client(base_url=url, timeout=30, follow_redirects=True) as bob:
            ann.get('/login/ann').raise_for_status()
            bob.get('/login/bob').raise_for_status()
            r = ann.post('/jobs/api/jobs', json={'plugin': 'echo', 'params': {'text': 'hi'}})
            assert r.status_code == 201 and r.json()['owner'] == 'ann'
            job = r.json()['id']
            assert f'id="cjm-row-{job}"' in ann.get('/mine').text and 'sse-connect="/jobs/stream"' in ann.get('/mine').text
            assert ann.get(f'/jobs/api/jobs/{job}').status_code == 200 and job in ann.get('/jobs/').text
            assert bob.get(f'/jobs/api/jobs/{job}').status_code == 404
            assert job not in bob.get('/mine').text and job not in bob.get('/jobs/').text
            assert bob.get('/jobs/api/jobs').json()['total'] == 0


def test_async_plugin_example_prints_what_the_readme_says(tmp_path):
    got, printed = run_printing_example(tmp_path, 5)
    assert got == printed


def test_scripted_backend_example_runs(tmp_path):
    "The README's test of a manager on scripted workers passes as written, on the quickstart's manager."
    readme = (pathlib.Path(__file__).parent.parent / 'README.md').read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    script = next(b for b in blocks if 'ScriptedBackend' in b)
    (tmp_path / 'myapp').mkdir()
    (tmp_path / 'myapp' / '__init__.py').write_text('')
    (tmp_path / 'myapp' / 'transcription.py').write_text(blocks[0])
    (tmp_path / 'main.py').write_text(script)
    out = subprocess.run([sys.executable, 'main.py'], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
