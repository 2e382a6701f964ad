"""Measures the event loop's worst stall while 50 MB results arrive, one after another (run in a process of its own, so
its environment can tune glibc's allocator). Prints the stalls in ms as JSON."""
import asyncio, json
from conftest import StallMonitor
from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager


async def main():
    m = DemoJobManager(worker_config=WorkerConfig(heartbeat_timeout_seconds=0))
    await m.start()
    stalls = []
    for _ in range(4):
        async with StallMonitor(at_exit=True) as mon:
            j = await m.start_job('big', n=50 << 20)
            await m.wait_for_job(j.id, 120)
        assert len(j.result['text']) == 50 << 20
        stalls.append(round(mon.worst * 1e3, 1))
        m.clear_completed_jobs()
        del j
    await m.shutdown()
    print(json.dumps(stalls))

if __name__ == '__main__': asyncio.run(main())
