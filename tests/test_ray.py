"""The Ray backend's own promises (run with `pytest --backend ray`): where workers run and say so, placement by
resources and GPUs, a lost agent, bounded connecting, and an event loop Ray never stalls. The behavioural suites
(test_jobs, test_cancel_ladder, ...) run unchanged against it through the `backend` fixture (tests/conftest.py)."""
import asyncio, contextlib, os, socket, subprocess, sys, threading, time

import psutil
import pytest

from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager

pytestmark = pytest.mark.ray


def ray_backend(**kw):
    from cjm_workers.backends.ray import RayBackend
    return RayBackend(**kw)


def node_with(resource:str) -> str:
    import ray
    return next(n['NodeID'] for n in ray.nodes() if n['Alive'] and resource in n['Resources'])


async def test_workers_run_in_ray_actors_and_say_where(make_manager):
    "A job runs in a worker that is no child of this process; job.worker_node and health() name its node."
    m = make_manager(max_workers=2, worker_backend=ray_backend())
    await m.start()
    job = await m.start_job('whoami')
    done = await m.wait_for_job(job.id, 60)
    assert done.status == 'completed', done.error
    # started by an agent actor (its process is a Ray worker: 'ray::WorkerAgent'), not by this process
    assert any('WorkerAgent' in ' '.join(p.cmdline()) for p in psutil.Process(done.result['pid']).parents())
    assert done.result['pid'] not in {p.pid for p in psutil.Process().children()}
    nodes = {w['pid']: w['node'] for w in m.health()['workers']}
    assert done.worker_node and nodes[done.worker_pid] == done.worker_node
    assert done.to_dict()['worker_node'] == done.worker_node


async def test_actor_options_place_workers_on_the_node_with_the_resource(make_manager):
    "actor_options={'resources': {'second_node': 1}}: every worker runs on the simulated second node."
    m = make_manager(max_workers=1, worker_backend=ray_backend(actor_options={'resources': {'second_node': 1}}))
    await m.start()
    job = await m.start_job('whoami')
    done = await m.wait_for_job(job.id, 60)
    assert done.status == 'completed', done.error
    assert done.worker_node.endswith('/' + node_with('second_node')[:8])


async def test_num_gpus_reaches_each_worker_as_cuda_visible_devices(make_manager):
    "num_gpus=1 per worker on a node with 2 GPUs: each worker process sees its own device in CUDA_VISIBLE_DEVICES."
    m = make_manager(max_workers=2, worker_backend=ray_backend(actor_options={'num_gpus': 1}))
    await m.start()
    seen = {}
    for _ in range(40):  # until both workers have answered
        jobs = [await m.start_job('whoami') for _ in range(4)]
        for j in jobs:
            done = await m.wait_for_job(j.id, 60)
            seen[done.result['pid']] = done.result['gpus']
        if len(seen) == 2: break
    assert sorted(seen.values()) == ['0', '1'], seen


async def test_a_lost_agent_fails_its_job_and_the_restart_policy_applies(make_manager):
    "The agent actor killed under a running job: the job fails 'worker node or agent lost: ...', and a new worker runs the next job."
    import ray
    m = make_manager(max_workers=1, worker_backend=ray_backend(), restart_backoff_base_seconds=0.1)
    await m.start()
    job = await m.start_job('sleep', seconds=60)
    with m.events.subscribe() as sub:
        while m.get_job(job.id).status != 'running':
            await asyncio.wait_for(sub.get(), 30)
    agent = m.pool.slots[0].handle.agent
    await asyncio.to_thread(ray.kill, agent, no_restart=True)
    failed = await m.wait_for_job(job.id, 30)
    assert failed.status == 'failed' and failed.error.startswith('worker node or agent lost'), failed.error
    again = await m.wait_for_job((await m.start_job('echo', text='next')).id, 60)
    assert again.status == 'completed' and m.health()['workers'][0]['restarts'] == 1


async def test_the_event_loop_is_never_held_by_ray(make_manager, stall_monitor):
    "Start, jobs, a stream, a cancel by kill, a crash and shutdown: the loop's worst stall stays under 10 ms (least of three runs)."
    worst = []
    for _ in range(3):
        async with stall_monitor() as mon:
            m = make_manager(max_workers=1, worker_backend=ray_backend(), cancel_grace_seconds=0.2, restart_backoff_base_seconds=0.1)
            await m.start()
            for _ in range(20): await m.wait_for_job((await m.start_job('echo', text='x')).id, 60)
            job = await m.start_job('stream_n', n=20000)
            assert len(''.join([p async for p in m.stream_job(job.id)])) == 20000
            job = await m.start_job('stubborn', seconds=30)
            while m.get_job(job.id).status != 'running': await asyncio.sleep(0.01)
            await m.cancel_job(job.id)
            crash = await m.wait_for_job((await m.start_job('crash', how='sigkill')).id, 60)
            assert crash.status == 'failed' and 'SIGKILL' in crash.error
            await m.shutdown()
        worst.append(mon.worst)
        if mon.worst < 0.010: break
    assert min(worst) < 0.010, worst


def test_connecting_to_a_cluster_that_never_answers_fails_within_the_timeout():
    "ray.init against an address that accepts and never answers (as a cluster wanting a token does): a clear error within connect_timeout."
    with socket.socket() as silent:
        silent.bind(('127.0.0.1', 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        script = f"""
import asyncio, time
from cjm_workers.demo.plugins import DemoJobManager
from cjm_workers.backends.ray import RayBackend
async def main():
    m = DemoJobManager(worker_backend=RayBackend(address='127.0.0.1:{port}', connect_timeout=3))
    t = time.monotonic()
    try: await m.start()
    except Exception as e: print('ERROR', round(time.monotonic() - t, 1), e, flush=True)
    finally: await m.shutdown()
asyncio.run(main())
"""
        p = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=90)
    line = next((l for l in p.stdout.splitlines() if l.startswith('ERROR')), None)
    assert line is not None, (p.stdout, p.stderr[-2000:])
    took = float(line.split()[1])
    assert took < 30 and 'could not connect to Ray at 127.0.0.1:' in line and 'token' in line, line


async def test_a_lost_node_fails_its_job_and_a_worker_that_cannot_be_placed_says_why(make_manager, ray_cluster):
    "A node removed under a running job: the job fails 'worker node or agent lost: ...'; the restart finds no node with the resource and says so."
    # cluster_utils installs signal handlers: it runs on the main thread (this test's setup, before any manager)
    node = ray_cluster.add_node(num_cpus=1, resources={'doomed_node': 1})
    ray_cluster.wait_for_nodes()
    m = make_manager(max_workers=1, worker_backend=ray_backend(actor_options={'resources': {'doomed_node': 1}}, start_timeout=3),
                     restart_backoff_base_seconds=0.1, max_restart_attempts=1)
    await m.start()
    job = await m.start_job('sleep', seconds=120)
    with m.events.subscribe() as sub:
        while m.get_job(job.id).status != 'running':
            await asyncio.wait_for(sub.get(), 30)
    assert m.get_job(job.id).worker_node.endswith('/' + node_with('doomed_node')[:8])
    ray_cluster.remove_node(node)  # main thread, as above; what is measured is after it
    failed = await m.wait_for_job(job.id, 60)
    assert failed.status == 'failed' and failed.error.startswith('worker node or agent lost'), failed.error
    end = time.monotonic() + 60
    while m.health()['broken_reason'] is None:  # its restart cannot be placed: no node has the resource now
        assert time.monotonic() < end, m.health()
        await asyncio.sleep(0.1)
    assert 'does any node have those resources' in m.health()['broken_reason'], m.health()['broken_reason']


async def test_the_environment_can_choose_ray(monkeypatch):
    "CJM_WORKERS_WORKER_BACKEND=ray: a manager built with no backend named runs its workers on Ray."
    from cjm_workers.backends.ray import RayBackend
    monkeypatch.setenv('CJM_WORKERS_WORKER_BACKEND', 'ray')
    m = DemoJobManager(worker_config=WorkerConfig(max_workers=1))
    assert isinstance(m.worker_backend, RayBackend)
    try:
        await m.start()
        done = await m.wait_for_job((await m.start_job('echo', text='env')).id, 60)
        assert done.status == 'completed' and done.worker_node
    finally: await m.shutdown()


async def test_a_plugin_module_is_imported_once_on_the_node_and_each_worker_gets_a_fresh_copy(ray_cluster):
    "The agent's fork server imports the entry point's module once (a replacement is a fork, not a fresh import); each worker gets its own copy of its state."
    import import_state
    from conftest import make_backend
    first, second = await import_state.two_workers(WorkerConfig(max_workers=1, max_jobs_per_worker=1), backend=make_backend('ray'))
    assert first['pid'] != second['pid'] and (first['seen'], second['seen']) == (['a'], ['b'])
    assert first['imported_in'] == second['imported_in'] not in (first['pid'], second['pid'])
