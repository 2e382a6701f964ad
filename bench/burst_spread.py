"""How far the burst ratio against the reference library moves from one measurement to the next on this machine: the
one-worker burst row of `bench/run.py` (`alternating_bursts`: 15 bursts of 1,000 no-op jobs each side, in sets of
five alternating with the reference's process) measured RUNS times in one process, one manager kept warm throughout.
Prints each measurement's ratio of burst rates and of CPU time per job, then their spread.

    python bench/burst_spread.py [RUNS]      # default 8; about 4 s each

Each measurement is what one `make bench` run reports; the spread is what a reader of one run should expect."""
import asyncio, pathlib, statistics, sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from run import alternating_bursts  # noqa: E402  (bench/run.py, next to this file)

from cjm_workers.core.config import WorkerConfig  # noqa: E402
from cjm_workers.demo.plugins import DemoJobManager  # noqa: E402


async def main(runs:int):
    m = DemoJobManager(worker_config=WorkerConfig(max_workers=1))
    try:
        for _ in range(2):  # warm: the first jobs pay for the fork server and the worker's start
            jobs = [await m.start_job('noop') for _ in range(1000)]
            for j in jobs: await m.wait_for_job(j.id)
        ratios, cpu_ratios = [], []
        for i in range(runs):
            ours, theirs, our_cpu, their_cpu = await alternating_bursts(m)
            ratios.append(ours / theirs)
            cpu_ratios.append(their_cpu / our_cpu)
            print(f"measurement {i + 1}: cjm_workers {ours:,.0f} jobs/s, the reference {theirs:,.0f} jobs/s: "
                  f"{ratios[-1]:.2f}x; CPU per job {our_cpu:.0f} / {their_cpu:.0f} us: {cpu_ratios[-1]:.2f}x", flush=True)
        print(f"\nburst ratio over {runs} measurements: median {statistics.median(ratios):.2f}x, "
              f"{min(ratios):.2f}-{max(ratios):.2f}x; at least 2x in {sum(r >= 2 for r in ratios)} of {runs}")
        print(f"CPU-per-job ratio: median {statistics.median(cpu_ratios):.2f}x, {min(cpu_ratios):.2f}-{max(cpu_ratios):.2f}x")
    finally:
        await m.shutdown()


if __name__ == '__main__':
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8))
