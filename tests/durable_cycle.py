"""A web process stand-in for the crash tests: recovers its journal, submits `record` jobs, runs until SIGKILLed.
Usage: durable_cycle.py JOURNAL RECORDS durable|default N_NEW [drain]; with `drain` it waits for every job to end and
prints the jobs' statuses as JSON."""
import asyncio, json, sys
from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager


async def main(journal, records, mode, n_new, drain):
    m = DemoJobManager(worker_config=WorkerConfig(max_workers=2), job_store=journal, durable_start=(mode == 'durable'))
    await m.start()
    for i in range(n_new): await m.start_job('record', path=records, seconds=0.02 * (i % 5))
    print('submitted', flush=True)
    if not drain:
        await asyncio.sleep(300)
        return
    for j in list(m.jobs.values()): await m.wait_for_job(j.id, 60)
    await m.flush_journal()
    page = await m.job_history(limit=1000)
    print(json.dumps({'total': page['total'], 'statuses': {j.id: j.status for j in page['jobs']}}), flush=True)
    await m.shutdown()

if __name__ == '__main__':
    a = sys.argv[1:]
    asyncio.run(main(a[0], a[1], a[2], int(a[3]), len(a) > 4 and a[4] == 'drain'))
