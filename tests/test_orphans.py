"""No process outlives its worker: what a plugin starts, also in a session of its own, dies with the worker."""
import asyncio, os, signal, subprocess, sys, time
import pytest
from conftest import gone, started, wait_until


async def helper_of(job):
    await wait_until(lambda: (job.status_message or '').startswith('helper'), 10, "the plugin to start its helper")
    return int(job.status_message.split()[1])


def assert_gone_within(pid, seconds, what):
    end = time.monotonic() + seconds
    while not gone(pid):
        assert time.monotonic() < end, f"{what} {pid} still alive after {seconds} s"
        time.sleep(0.01)


@pytest.fixture
def reap():
    pids = []
    yield pids.append
    for pid in pids:
        try: os.kill(pid, signal.SIGKILL)
        except OSError: pass


async def test_helper_in_a_new_session_dies_when_the_worker_is_killed(make_manager, reap):
    m = make_manager(cancel_grace_seconds=5.0)
    job = await m.start_job('spawn_helper', seconds=300)
    helper = await helper_of(job)
    reap(helper)
    assert os.getsid(helper) == helper != os.getsid(job.worker_pid)  # its own session: a group kill misses it
    assert await m.cancel_job(job.id)  # the plugin never checks: its worker is killed
    await asyncio.to_thread(assert_gone_within, helper, 1.0, "helper")


async def test_helper_dies_when_the_worker_crashes(make_manager, reap):
    m = make_manager()
    job = await m.start_job('spawn_helper', seconds=300)
    helper = await helper_of(job)
    reap(helper)
    os.kill(job.worker_pid, signal.SIGKILL)  # from outside, as the OOM killer would
    await m.wait_for_job(job.id, 10)
    assert job.status == 'failed' and 'SIGKILL' in job.error
    await asyncio.to_thread(assert_gone_within, helper, 1.0, "helper")


async def test_helper_dies_when_the_worker_is_stopped(make_manager, reap):
    m = make_manager()
    job = await m.start_job('spawn_helper', seconds=0.01)
    helper = await helper_of(job)
    reap(helper)
    await m.wait_for_job(job.id, 10)
    assert job.status == 'completed' and not gone(helper)  # a plugin's helper may live as long as its worker
    await m.shutdown()
    await asyncio.to_thread(assert_gone_within, helper, 1.0, "helper")


def test_helper_dies_when_the_web_process_is_sigkilled(reap):
    here = os.path.dirname(__file__)
    p = subprocess.Popen([sys.executable, os.path.join(here, 'orphan_parent.py')], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, 'PYTHONPATH': os.pathsep.join([os.path.dirname(here), here])})
    try:
        worker, helper = map(int, p.stdout.readline().split())
        reap(worker); reap(helper)
        p.kill()
        p.wait(10)
        assert_gone_within(worker, 5.0, "worker")  # it notices its parent's death at once (end of file on its pipe)
        assert_gone_within(helper, 1.0, "helper")
    finally:
        p.kill()
        p.wait(10)
