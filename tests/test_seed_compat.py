"""A complete app written for cjm-fasthtml-workers (seed 002) runs on cjm_workers with only its imports changed."""
import asyncio, importlib, time
import httpx, pytest
from conftest import wait_until

import seed002_app
from cjm_workers.core.config import WorkerConfig


@pytest.fixture
async def seed_app(tmp_path):
    parts = seed002_app.build_app(tmp_path / 'configs', WorkerConfig(cancel_grace_seconds=5.0))
    m = parts['job_manager']
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=parts['app']), base_url='http://127.0.0.1')
    try: yield parts, client
    finally:
        await client.aclose()
        await asyncio.wait_for(m.shutdown(), 20)


def test_the_seed_module_paths_and_names_import():
    "Every seed-002 module path and public name exists, and the manager is generic in its job type."
    names = {'core.adapters': ['create_simple_adapter', 'default_result_adapter'],
             'core.config': ['RestartPolicy', 'WorkerConfig'],
             'core.protocol': ['WorkerRequestType', 'WorkerResponseType', 'WorkerRequest', 'WorkerResponse',
                               'WorkerStreamChunk', 'WorkerResult', 'PluginManagerAdapter'],
             'core.worker': ['base_worker_process'],
             'extensions.adapters': ['UnifiedPluginRegistryAdapter', 'ResourceManagerAdapter', 'SSEBroadcasterAdapter',
                                     'create_standard_adapters'],
             'extensions.protocols': ['PluginRegistryProtocol', 'ResourceManagerProtocol', 'EventBroadcasterProtocol'],
             'managers.base': ['JobType', 'BaseJob', 'BaseJobManager']}
    for mod, wanted in names.items():
        m = importlib.import_module(f'cjm_workers.{mod}')
        assert not [n for n in wanted if not hasattr(m, n)], mod
    from cjm_workers.managers.base import BaseJobManager, BaseJob, JobType
    assert BaseJobManager[BaseJob] is not None and JobType.__bound__ is BaseJob
    assert seed002_app.TextProcessingManager.__orig_bases__[0].__args__ == (seed002_app.TextProcessingJob,)


async def test_seed_app_routes_registry_configs_and_resource_manager(seed_app):
    parts, client = seed_app
    m, rm, sse = parts['job_manager'], parts['resource_manager'], parts['sse_manager']

    r = await client.post('/jobs/create', data={'plugin_id': 'processing_word_counter', 'text': 'one two three'})
    assert r.status_code == 200 and 'Error' not in r.text
    job = m.get_all_jobs()[0]
    await m.wait_for_job(job.id, 30)
    assert job.status == 'completed' and job.plugin_name == 'word_counter'

    # the saved registry configuration reached the worker (the plugin was loaded with it) and every hook
    assert job.result['metadata']['model_id'] == 'registry-model-7' and job.result['metadata']['device'] == 'cuda:0'
    saved = {'model_id': 'registry-model-7', 'device': 'cuda:0'}
    assert ('processing_word_counter', saved) in m.validated and saved in m.identified

    # the reference's shapes: get_job_result, worker_process, and the completion hook that reads them
    r = await client.get(f'/jobs/{job.id}/result')
    assert r.json() == {'status': 'success', 'data': job.result}
    assert m.completion_texts == ['Word count: 3'] and job.result['text'] == 'Word count: 3'
    pid = m.worker_process.pid
    assert m.worker_process.is_alive() and job.worker_pid == pid

    # the resource manager saw the job with its config, then the worker idle with no job
    w = rm.get_worker_by_pid(pid)
    assert w.worker_type == 'text_processing' and w.loaded_plugin_resource == 'registry-model-7' and w.config == saved
    assert w.plugin_id == 'processing_word_counter' and w.plugin_name == 'word_counter'
    assert w.status == 'idle' and not w.job_id

    # reload_plugin updates the resource manager at once
    assert await m.reload_plugin('uppercase', {'model_id': 'upper-2', 'device': 'cpu'})
    w = rm.get_worker_by_pid(pid)
    assert (w.plugin_name, w.plugin_id, w.loaded_plugin_resource, w.config) == \
           ('uppercase', 'processing_uppercase', 'upper-2', {'model_id': 'upper-2', 'device': 'cpu'})
    up = await m.start_job('processing_uppercase', text='abc')
    await m.wait_for_job(up.id, 30)
    assert up.result['text'] == 'ABC' and up.result['metadata']['model_id'] == 'upper-2'

    # an unknown plugin id is refused where it enters, as the reference did
    with pytest.raises(ValueError, match='not found'): await m.start_job('processing_nope', text='x')
    r = await client.post('/jobs/create', data={'plugin_id': 'nope', 'text': 'x'})
    assert 'Error creating job' in r.text and len(m.get_all_jobs()) == 2

    # events reached the SSE broadcast manager through the seed's adapter
    kinds = [e['type'] for e in sse.history]
    assert 'text_processing:queued' in kinds and 'text_processing:completed' in kinds

    r = await client.get('/jobs/list')
    assert r.text.count('status-completed') == 2


async def test_seed_app_cancel_of_a_plugin_that_never_checks(seed_app):
    "The ported app's cancel route: a 5 s plugin that never checks is cancelled at once, not after the 5 s grace."
    parts, client = seed_app
    m, rm = parts['job_manager'], parts['resource_manager']
    await m.start()
    first_pid = m.worker_process.pid
    r = await client.post('/jobs/create', data={'plugin_id': 'processing_slow_processor', 'text': 'slow'})
    job = m.get_all_jobs()[0]
    await wait_until(lambda: job.status == 'running', 10, "the slow job to start")
    t = time.monotonic()
    r = await client.post(f'/jobs/{job.id}/cancel')
    took = time.monotonic() - t
    assert 'Cancelled' in r.text and job.status == 'cancelled', (r.text, job.status, job.error)
    assert took < 2.5, took  # the grace period is 5 s; a kill and a reply take milliseconds
    assert 'does not check for cancellation' in job.error
    assert (await client.get(f'/jobs/{job.id}/result')).json()['status'] == 'cancelled'
    # the killed worker left the resource manager; its replacement runs the next job
    await wait_until(lambda: first_pid in rm.unregistered, 10, "the killed worker to be unregistered")
    nxt = await m.start_job('processing_uppercase', text='after')
    await m.wait_for_job(nxt.id, 30)
    assert nxt.status == 'completed' and nxt.worker_pid != first_pid
    kinds = [e['type'] for e in parts['sse_manager'].history if e['data'].get('job_id') == job.id]
    assert kinds.index('text_processing:cancelling') < kinds.index('text_processing:cancelled')


async def test_seed_app_cancel_of_a_stream_that_never_checks(seed_app):
    "A streaming plugin that never checks stops at its next chunk; what it streamed is kept and the worker stays."
    parts, client = seed_app
    m = parts['job_manager']
    job = await m.start_job('processing_streamer', text='s', chunks=1000, interval=0.05)
    await wait_until(lambda: len(job.output) > 6, 10, "some output")
    pid = job.worker_pid
    r = await client.post(f'/jobs/{job.id}/cancel')
    assert 'Cancelled' in r.text and job.status == 'cancelled' and 'chunk boundary' in job.error
    kept = job.output
    assert kept.startswith('w0 w1 ') and len(kept.split()) < 100
    after = await m.start_job('processing_uppercase', text='warm')
    await m.wait_for_job(after.id, 30)
    assert after.worker_pid == pid and m.worker_process.pid == pid  # the same warm worker: nothing was killed
    assert job.output == kept  # nothing more arrived after the cancel


async def test_unknown_plugin_ids_are_refused_whenever_the_manager_knows_its_plugins(make_manager):
    from cjm_workers.demo.plugins import DemoJobManager
    declared = DemoJobManager(worker_type='declared', plugins=['echo'])
    try:  # a declared list: refused before any worker exists
        with pytest.raises(ValueError, match="'sleep' not found: this manager runs \\['echo'\\]"):
            await declared.start_job('sleep', seconds=1)
        assert not declared.jobs
    finally: await declared.shutdown()
    m = make_manager()  # no registry, no list: the first start_job waits for the workers and learns their plugins
    with pytest.raises(ValueError, match="'no_such_plugin' not found: its workers have \\[.*'echo'"):
        await m.start_job('no_such_plugin')
    assert not m.jobs and m.health()['state'] == 'RUNNING'
    ok = await m.start_job('echo', text='known')
    await m.wait_for_job(ok.id, 30)
    assert ok.status == 'completed'
