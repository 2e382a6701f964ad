"""A worker that cannot start says so: WorkerStartError with the worker's own error text, and nothing waits."""
import asyncio, time
import pytest
from cjm_workers.demo.plugins import DemoJobManager
from cjm_workers.managers.base import WorkerStartError, WorkerUnavailableError
import bad_workers, refuses_worker_import


class FactoryRaises(DemoJobManager):
    def get_worker_entry_point(self): return bad_workers.factory_raises_worker

class Unimportable(DemoJobManager):
    def get_worker_entry_point(self): return refuses_worker_import.entry


@pytest.fixture
def managers(make_manager): return lambda cls, **config: make_manager(cls=cls, **config)


async def test_factory_that_raises_fails_start_with_its_text(managers):
    m = managers(FactoryRaises, max_workers=2, restart_policy='always')
    t = time.monotonic()
    with pytest.raises(WorkerStartError, match='no GPU found: CUDA_VISIBLE_DEVICES is empty') as e:
        await m.start()
    assert isinstance(e.value, WorkerUnavailableError) and time.monotonic() - t < 20  # not retried three times
    h = m.health()
    assert 'no GPU found' in h['start_error'] and h['state'] == 'FORCE_STOPPED' and m.restart_count == 0
    with pytest.raises(WorkerStartError, match='no GPU found'): await m.start_job('echo', text='x')
    assert not m.jobs  # nothing waits in a queue nobody can serve


async def test_first_start_jobs_raise_when_the_entry_point_cannot_be_imported(managers):
    m = managers(Unimportable)
    results = await asyncio.gather(*(m.start_job('echo', text=str(i)) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, WorkerStartError) for r in results), results
    assert 'cannot be imported: ImportError: this module refuses to load in a worker' in str(results[0])
    assert not m.jobs and 'refuses to load' in m.health()['start_error']


async def test_a_manager_that_ran_still_restarts_after_a_crash(managers):
    "The start-error rule is for workers that never started: a crash later is the restart policy's business."
    m = managers(DemoJobManager)
    await m.start()
    crash = await m.start_job('crash', how='exit')
    await m.wait_for_job(crash.id, 10)
    ok = await m.start_job('echo', text='after')
    await m.wait_for_job(ok.id, 30)
    assert ok.status == 'completed' and m.health()['start_error'] is None
