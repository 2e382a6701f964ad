"""A web process stand-in: starts a job whose plugin starts a helper in a session of its own, prints the pids, waits.
The test SIGKILLs this process; its worker must take the helper along when it notices."""
import asyncio, sys
from cjm_workers.demo.plugins import DemoJobManager


async def main():
    m = DemoJobManager()
    job = await m.start_job('spawn_helper', seconds=300)
    while not (job.status_message or '').startswith('helper'): await asyncio.sleep(0.01)
    print(job.worker_pid, job.status_message.split()[1], flush=True)
    await asyncio.sleep(300)

if __name__ == '__main__': asyncio.run(main())
