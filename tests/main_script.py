"""A web app's main script, run as `python main_script.py LOG MODE` by tests/test_worker_start.py.

Its top level does what an app module does (imports, setting up) and writes a line to LOG each time it runs, in
whichever process. MODE 'module': the manager's entry point comes from an importable module (the demo plugins);
'main': the entry point is defined here, in the main module, so its workers must run this script again to find it."""
import asyncio, json, os, sys

from cjm_workers.core.worker import base_worker_process
from cjm_workers.demo.plugins import DemoJobManager, DemoPluginManager

LOG, MODE = sys.argv[1], sys.argv[2]
with open(LOG, 'a') as f: f.write(f"{__name__} {os.getpid()}\n")


def main_worker(request_queue, result_queue, response_queue):
    base_worker_process(request_queue, result_queue, response_queue, plugin_manager_factory=DemoPluginManager)


class MainManager(DemoJobManager):
    def get_worker_entry_point(self): return main_worker if MODE == 'main' else super().get_worker_entry_point()


async def run():
    from cjm_workers.core.config import WorkerConfig
    m = MainManager(worker_config=WorkerConfig(max_workers=1, cancel_grace_seconds=0.05))
    try:
        pids = []
        for _ in range(2):  # two workers: the second replaces the first, killed to cancel a plugin that never checks
            stuck = await m.start_job('stubborn', seconds=30)
            while stuck.status != 'running': await asyncio.sleep(0.005)
            pids.append(stuck.worker_pid)
            await m.cancel_job(stuck.id)
        job = await m.start_job('whoami')
        await asyncio.wait_for(m.wait_for_job(job.id), 30)
        print(json.dumps({'status': job.status, 'workers': pids + [job.worker_pid], 'parent': os.getpid()}))
    finally: await m.shutdown()

if __name__ == '__main__': asyncio.run(run())
