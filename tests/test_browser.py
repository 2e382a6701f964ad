"The demo dashboard in a real browser: Debian's Chromium driven by Playwright, against the demo app on a free port."
import os, time
from pathlib import Path
import pytest
from conftest import serving

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = next((p for p in (os.environ.get('CHROMIUM'), '/usr/bin/chromium', '/usr/bin/chromium-browser') if p and os.path.exists(p)), None)
if CHROMIUM is None: pytest.fail("no Chromium: `make test` installs it (tools/install-chromium)", pytrace=False)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get('CJM_TEST_ARTIFACTS', Path(__file__).parent.parent / 'test-artifacts'))
WAIT = 20_000  # ms, for anything a job does


@pytest.fixture(scope='module')
def demo():
    with serving(['-m', 'cjm_workers.demo.app'], '/jobs/api/health') as (url, _): yield url


@pytest.fixture(scope='module')
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try: yield b
        finally: b.close()


@pytest.fixture
def page(browser, demo):
    page = browser.new_page(viewport={'width': 1280, 'height': 1000})
    errors, away = [], []
    from urllib.parse import urlparse
    page.on('request', lambda r: away.append(r.url) if urlparse(r.url).scheme not in ('data', 'about')
            and urlparse(r.url).hostname != '127.0.0.1' else None)
    page.on('pageerror', lambda e: errors.append(str(e)))
    page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
    try:
        page.goto(demo + '/')
        page.wait_for_function("window.htmx && document.querySelector('[sse-connect]')", timeout=WAIT)
        # the stream is open once its snapshot has been swapped in
        page.wait_for_function("htmx.find('[sse-connect]')['htmx-internal-data'].sseEventSource?.readyState === 1", timeout=WAIT)
        yield page
        assert errors == [], errors
        assert away == [], f"requests that left 127.0.0.1: {away}"
    finally: page.close()


def submit(page, label) -> str:
    "Click a preset button; return the new job's id."
    page.locator('.cjm-presets button', has_text=label).click()
    msg = page.locator('#cjm-submit-msg [data-job]')
    msg.wait_for(timeout=WAIT)
    job = msg.get_attribute('data-job')
    page.locator(f'#cjm-job-{job}').wait_for(timeout=WAIT)  # the card arrived over SSE
    page.evaluate("document.getElementById('cjm-submit-msg').innerHTML = ''")
    return job


def status(page, job): return page.locator(f'#cjm-head-{job} .cjm-badge')


def test_progress_streaming_and_cancel(page):
    job = submit(page, 'Generate text')
    bar = f'#cjm-status-{job} progress'
    page.wait_for_function(f"document.querySelector('{bar}')?.value > 0", timeout=WAIT)
    first = page.eval_on_selector(bar, 'e => e.value')
    page.wait_for_function(f"document.querySelector('{bar}').value > {first}", timeout=WAIT)      # it advances
    out = page.locator(f'#cjm-out-{job}')
    page.wait_for_function(f"document.getElementById('cjm-out-{job}').textContent.split(' ').length >= 5", timeout=WAIT)
    assert out.text_content().startswith('Once upon a time')
    assert status(page, job).text_content() == 'running'
    page.locator(f'#cjm-head-{job} .cjm-cancel').click()
    playwright.expect(status(page, job)).to_have_text('cancelled', timeout=WAIT)
    playwright.expect(page.locator(f'#cjm-head-{job} .cjm-cancel')).to_have_count(0)  # a finished job has no Cancel
    playwright.expect(page.locator(f'#cjm-row-{job} .cjm-badge')).to_have_text('cancelled')
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / 'dashboard.png'), full_page=True)


def test_crash_shows_failed_with_reason_and_the_next_job_runs(page):
    pids = set(page.locator('#cjm-workers td:first-child').all_text_contents())
    job = submit(page, 'Kill my own worker')
    playwright.expect(status(page, job)).to_have_text('failed', timeout=WAIT)
    playwright.expect(page.locator(f'#cjm-status-{job} .cjm-error')).to_contain_text('worker', timeout=WAIT)
    after = submit(page, 'Print and log')
    playwright.expect(status(page, after)).to_have_text('completed', timeout=WAIT)
    log = page.locator(f'#cjm-log-{after}')
    playwright.expect(log).to_contain_text('<b>not bold</b> 4', timeout=WAIT)                   # printed lines, as text
    playwright.expect(log).to_contain_text('WARNING demo.chatty: a warning with <b>not bold</b>')
    assert page.locator(f'#cjm-log-{after} b').count() == 0
    # the worker panel shows the replacement worker (a pid that was not there before)
    page.wait_for_function(f"[...document.querySelectorAll('#cjm-workers td:first-child')].some(td => !{sorted(pids)!r}.includes(td.textContent))",
                           timeout=WAIT)


def test_totals_count_jobs_that_end_while_the_page_is_open(page):
    "A console kept open all day: its totals are redrawn with the health events (every 2 s), not only at page load."
    total = "[...document.querySelectorAll('#cjm-totals td:not(:first-child)')].reduce((n, td) => n + (+td.textContent), 0)"
    before = page.evaluate(total)
    job = submit(page, 'Print and log')
    playwright.expect(status(page, job)).to_have_text('completed', timeout=WAIT)
    page.wait_for_function(f"{total} === {before + 1}", timeout=WAIT)


def test_streamed_script_is_shown_as_text_and_never_runs(page):
    from cjm_workers.demo.app import XSS_TEXT
    job = submit(page, 'Stream <script>')
    playwright.expect(status(page, job)).to_have_text('completed', timeout=WAIT)
    playwright.expect(page.locator(f'#cjm-out-{job}')).to_have_text(XSS_TEXT)
    assert page.evaluate('window.xss') is None
    card = f'#cjm-job-{job}'
    assert page.locator(f'{card} script').count() == 0 and page.locator(f'{card} img').count() == 0
    assert '<script>window.xss=1</script>' in page.locator(f'#cjm-head-{job} .cjm-params').text_content()  # parameters too
    # and after a reload (the page is rendered on the server, then the stream's snapshot redraws it)
    page.reload()
    playwright.expect(page.locator(f'#cjm-out-{job}')).to_have_text(XSS_TEXT, timeout=WAIT)
    assert page.evaluate('window.xss') is None


def test_a_human_click_on_cancel_lands_while_the_job_updates_20_times_a_second(page):
    "Mouse down, a 80-150 ms hold as people click, up: 10 of 10 reach the server while progress streams in."
    import random, time
    rng = random.Random(5)
    landed = 0
    for i in range(10):
        r = page.request.post(page.url.rstrip('/') + '/api/jobs',
                              data={'plugin': 'generate_text', 'params': {'tokens': 2000, 'delay': 0.05}})  # 20 updates a second
        job = r.json()['id']
        button = page.locator(f'#cjm-head-{job} .cjm-cancel')
        playwright.expect(status(page, job)).to_have_text('running', timeout=WAIT)
        page.wait_for_function(f"document.querySelector('#cjm-status-{job} progress')?.value > 0.002", timeout=WAIT)
        button.scroll_into_view_if_needed()  # as a person scrolls to it
        box = button.bounding_box()
        page.mouse.move(box['x'] + box['width'] / 2, box['y'] + box['height'] / 2)
        page.mouse.down()
        time.sleep(rng.uniform(0.08, 0.15))  # the hold: the page keeps receiving updates meanwhile
        page.mouse.up()
        try:
            playwright.expect(status(page, job)).to_have_text('cancelled', timeout=5000)
            landed += 1
        except AssertionError: page.request.post(page.url.rstrip('/') + f'/api/jobs/{job}/cancel')  # tidy up
        page.mouse.move(0, 0)
    assert landed == 10, f"{landed} of 10 clicks reached the server"


def test_pages_at_1280_and_390_px_without_sideways_scroll(page, demo):
    "Overview, jobs list and a job's page, at a desktop width and a phone's: screenshots saved; no horizontal scroll."
    job = submit(page, 'Raise an exception')
    playwright.expect(status(page, job)).to_have_text('failed', timeout=WAIT)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        page.set_viewport_size({'width': width, 'height': 900})
        for name, path in (('overview', '/jobs/'), ('jobs', '/jobs/jobs'), ('job', f'/jobs/jobs/{job}'), ('stats', '/jobs/stats'),
                           ('workers', '/jobs/workers')):
            page.goto(demo + path)
            page.wait_for_load_state('networkidle') if name == 'jobs' else page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / f'{name}-{width}.png'), full_page=True)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{name} scrolls sideways by {overflow} px at {width} px"
            if name == 'job': assert 'Traceback' in page.content() and 'this plugin always fails' in page.content()
            if name == 'stats': assert page.locator('.cjm-chart svg').count() >= 2
    # moments read as relative times, the exact local time on hover; dark mode follows the system
    page.set_viewport_size({'width': 1280, 'height': 900})
    page.goto(demo + '/jobs/jobs')
    page.wait_for_function("[...document.querySelectorAll('time.cjm-time')].some(t => /ago|just now/.test(t.textContent))", timeout=WAIT)
    assert page.locator('time.cjm-time').first.get_attribute('title')
    page.emulate_media(color_scheme='dark')
    page.goto(demo + f'/jobs/jobs/{job}')
    page.screenshot(path=str(ARTIFACTS / 'job-dark-1280.png'), full_page=True)
    bg = page.evaluate("getComputedStyle(document.querySelector('.cjm-page')).backgroundColor")
    rgb = [int(x) for x in bg[bg.index('(') + 1:bg.index(')')].split(',')[:3]]
    assert sum(rgb) < 150, bg  # dark


def test_cancel_selected_keeps_the_choice_while_rows_update(page):
    "Check two waiting jobs, let one start (its row is redrawn live), then Cancel selected: exactly those two end cancelled."
    api = page.url.rstrip('/') + '/api/jobs'
    ids = [page.request.post(api, data={'plugin': 'generate_text', 'params': {'tokens': 4000, 'delay': 0.05}}).json()['id'] for _ in range(4)]
    try:
        for j in ids: page.locator(f'#cjm-row-{j}').wait_for(timeout=WAIT)
        playwright.expect(page.locator(f'#cjm-row-{ids[0]} .cjm-badge')).to_have_text('running', timeout=WAIT)
        playwright.expect(page.locator(f'#cjm-row-{ids[1]} .cjm-badge')).to_have_text('running', timeout=WAIT)
        picked = ids[2:]  # waiting: the demo runs two workers
        for j in picked: page.locator(f'#cjm-row-{j} input.cjm-select').check()
        playwright.expect(page.locator('.cjm-cancel-selected')).to_have_text('Cancel selected (2)')
        page.request.post(f"{api}/{ids[0]}/cancel")  # a worker frees up: the third job starts and its row is redrawn
        playwright.expect(page.locator(f'#cjm-row-{ids[2]} .cjm-badge')).to_have_text('running', timeout=WAIT)
        assert page.locator(f'#cjm-row-{ids[2]} input.cjm-select').is_checked()  # still chosen after the redraw
        page.on('dialog', lambda d: d.accept())
        page.locator('.cjm-cancel-selected').click()
        for j in picked: playwright.expect(page.locator(f'#cjm-row-{j} .cjm-badge')).to_have_text('cancelled', timeout=WAIT)
        assert page.locator(f'#cjm-row-{ids[1]} .cjm-badge').text_content() == 'running'  # not chosen: untouched
        playwright.expect(page.locator('.cjm-cancel-selected')).to_be_disabled()
    finally:
        for j in ids: page.request.post(f"{api}/{j}/cancel")


def test_the_form_offers_a_plugins_declared_parameters_as_typed_fields(page, demo):
    form = page.locator('form.cjm-generic')
    form.locator('select[name=plugin]').select_option('count_primes')
    field = form.locator('#cjm-param-fields input[name=n]')
    playwright.expect(field).to_have_attribute('type', 'number', timeout=WAIT)
    assert field.get_attribute('min') == '2' and field.get_attribute('placeholder') == '100000'
    field.fill('5000')
    form.locator('button[type=submit]').click()
    msg = page.locator('#cjm-submit-msg [data-job]')
    msg.wait_for(timeout=WAIT)
    job = page.request.get(demo + f"/jobs/api/jobs/{msg.get_attribute('data-job')}").json()
    assert job['metadata']['params'] == {'n': 5000}  # a number, as declared; the empty field was left to its default
    form.locator('select[name=plugin]').select_option('stubborn')
    playwright.expect(form.locator('#cjm-param-fields select[name=looks]')).to_have_count(1, timeout=WAIT)
    form.locator('select[name=plugin]').select_option('echo')
    playwright.expect(form.locator('#cjm-param-fields input[name=text]')).to_have_attribute('type', 'text', timeout=WAIT)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator('#cjm-submit').screenshot(path=str(ARTIFACTS / 'submit-form.png'))


EVIL = '<img src=x onerror="window.xss=1"><script>window.xss=2</script>'


@pytest.fixture(scope='module')
def console_app():
    with serving(['-m', 'uvicorn', 'console_app:app', '--app-dir', str(Path(__file__).parent), '--host', '127.0.0.1',
                  '--timeout-graceful-shutdown', '2'], '/jobs/api/health') as (url, _): yield url


def test_every_page_escapes_job_data_and_shows_only_what_the_access_rule_allows(browser, console_app):
    "Jobs of a user named with markup carry markup in every field; on every page, in Chromium, it is text, and another user sees none of it."
    import httpx
    api = console_app + '/jobs/api/jobs'
    mallory = {'x-user': EVIL}
    with httpx.Client(timeout=30) as c:
        jobs = [c.post(api, headers=mallory, json={'plugin': p, 'params': params}).json()['id'] for p, params in (
            ('fail', {'message': EVIL}), ('chatty', {'lines': 2, 'text': EVIL}), ('generate_text', {'prompt': EVIL, 'tokens': 2, 'delay': 0}),
            ('echo', {'text': EVIL}))]
        for j in jobs:  # each ends (the log tail, output, error and result all hold markup)
            end = time.monotonic() + 30
            while c.get(f"{api}/{j}", headers=mallory).json()['status'] in ('pending', 'running'):
                assert time.monotonic() < end
                time.sleep(0.05)
        ann = c.post(api, headers={'x-user': 'ann'}, json={'plugin': 'echo', 'params': {'text': 'ann only'}}).json()['id']
    pages = ['/jobs/', '/jobs/jobs', *[f'/jobs/jobs/{j}' for j in jobs], '/jobs/workers', '/jobs/stats', f'/jobs/jobs?owner={EVIL}']
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(extra_http_headers=mallory, viewport={'width': 1280, 'height': 900})
    try:
        ctx.add_init_script("window.__sse = 0; document.addEventListener('htmx:sseMessage', () => window.__sse++)")
        page = ctx.new_page()
        errors = []
        page.on('pageerror', lambda e: errors.append(str(e)))
        for path in pages:
            r = page.goto(console_app + path)
            assert r.status == 200, path
            # a live page: its stream's first event (the snapshot) has been swapped in
            page.wait_for_function("!document.querySelector('[sse-connect]') || window.__sse > 0", timeout=WAIT)
            assert page.evaluate('window.xss') is None, path
            assert page.locator('.cjm-page img, .cjm-page script:not([src])').count() == 0, path
            assert ann not in page.content(), f"{path} shows another user's job"
        page.goto(console_app + f'/jobs/jobs/{jobs[1]}')
        playwright.expect(page.locator('.cjm-page')).to_contain_text(EVIL)  # shown, as text
        page.screenshot(path=str(ARTIFACTS / 'job-xss-1280.png'), full_page=True)
        # another user's job: its page, output, stream and actions answer as if it did not exist
        for path in (f'/jobs/jobs/{ann}', f'/jobs/api/jobs/{ann}', f'/jobs/api/jobs/{ann}/output'):
            assert page.request.get(console_app + path).status == 404, path
        for path in (f'/jobs/api/jobs/{ann}/cancel', f'/jobs/api/jobs/{ann}/retry'):
            assert page.request.post(console_app + path).status == 404, path
        assert page.request.post(console_app + '/jobs/api/jobs/cancel', data={'ids': [ann]}).json()['cancelling'] == 0
        page.goto(console_app + '/jobs/jobs')
        assert errors == [], errors
    finally: ctx.close()
    with httpx.Client(timeout=30) as c:  # nothing of ann's was touched
        assert c.get(f"{api}/{ann}", headers={'x-user': 'ann'}).json()['status'] in ('pending', 'running', 'completed')
        assert c.get(f"{api}/{ann}").status_code == 404  # no user: no jobs


def test_paging_and_filters_over_10000_journal_jobs(browser, tmp_path):
    "A journal of 10,000 jobs from an earlier run: page through it, filter it with the form, sort it, in Chromium."
    from cjm_workers.core.store import SQLiteJobStore
    path = str(tmp_path / 'jobs.db')
    store = SQLiteJobStore(path)
    store.open('demo')
    iso = lambda s: time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(s)) + '+00:00'
    t0 = time.time() - 20_000
    jobs = [{'id': f'{i:032x}', 'plugin_id': ('echo', 'resize')[i % 2], 'status': 'failed' if i % 100 == 0 else 'completed',
             'priority': 0, 'created_at': iso(t0 + i), 'started_at': iso(t0 + i), 'completed_at': iso(t0 + i + (i % 7)),
             'error': None, 'worker_pid': 1, 'attempt': 1, 'owner': ('ann', 'bob')[i % 2 == 0 and i % 4 == 0]} for i in range(10_000)]
    store.write('demo', jobs, {}, [])
    store.close('demo')
    with serving(['-m', 'uvicorn', 'console_app:app', '--app-dir', str(Path(__file__).parent), '--host', '127.0.0.1',
                  '--timeout-graceful-shutdown', '2'], '/jobs/api/health', env={'CONSOLE_JOURNAL': path}) as (url, _):
        page = browser.new_page(viewport={'width': 1280, 'height': 900})
        try:
            page.goto(url + '/jobs/jobs')
            rows = page.locator('#cjm-page-rows tr')
            playwright.expect(page.locator('.cjm-pager')).to_contain_text('1–50 of 10,000')
            assert rows.count() == 50 and rows.first.get_attribute('id') == f'cjm-row-{9999:032x}'  # newest first
            page.locator('.cjm-pager a', has_text='older').click()
            playwright.expect(page.locator('.cjm-pager')).to_contain_text('51–100 of 10,000')
            assert rows.first.get_attribute('id') == f'cjm-row-{9949:032x}'
            form = page.locator('form.cjm-filters')
            form.locator('select[name=status]').select_option('failed')
            form.locator('input[name=plugin]').fill('echo')
            form.locator('button[type=submit]').click()
            playwright.expect(page.locator('.cjm-pager')).to_contain_text('1–50 of 100')  # every 100th is failed, and even: echo
            assert all(r.locator('.cjm-badge').text_content() == 'failed' for r in rows.all())
            form = page.locator('form.cjm-filters')
            form.locator('select[name=status]').select_option('')
            form.locator('input[name=plugin]').fill('')
            form.locator('input[name=owner]').fill('bob')
            form.locator('select[name=sort]').select_option('duration')
            form.locator('button[type=submit]').click()
            playwright.expect(page.locator('.cjm-pager')).to_contain_text('of 2,500')  # every 4th
            assert page.locator('#cjm-page-rows tr .cjm-elapsed').first.text_content().strip().startswith('6')  # the longest: 6 s
            page.locator('.cjm-pager a', has_text='older').click()
            playwright.expect(page.locator('.cjm-pager')).to_contain_text('51–100 of 2,500')
            assert 'owner=bob' in page.url and 'sort=duration' in page.url  # the filters stay while paging
            page.screenshot(path=str(ARTIFACTS / 'jobs-journal-1280.png'), full_page=True)
        finally: page.close()
