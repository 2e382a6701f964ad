"""The web process's work per job in a burst, as CPU instructions counted by valgrind: deterministic to about 0.5%, where
times on this shared machine swing by half from one minute to the next. Runs a manager with one worker through bursts
of no-op jobs under `valgrind --tool=cachegrind`, once with no bursts and once with BURSTS of them, and prints the
difference per job. Only the manager's process is counted (its workers are not traced). Under valgrind the manager
runs some 50x slower than its worker, so every refill is full: the figure is the manager's own work, not its waiting.

    python bench/manager_instructions.py            # this checkout
    python bench/manager_instructions.py TREE ...   # other checkouts (a git worktree of another commit, say), in turn

Needs valgrind (`apt-get install valgrind`); takes about a minute per tree."""
import asyncio, os, re, shutil, subprocess, sys

N_BURST, BURSTS = 1000, 4


async def bursts(n:int):
    from cjm_workers.core.config import WorkerConfig
    from cjm_workers.demo.plugins import DemoJobManager
    m = DemoJobManager(worker_config=WorkerConfig(max_workers=1))
    j = await m.start_job('noop')
    await m.wait_for_job(j.id)
    for _ in range(n):
        jobs = [await m.start_job('noop') for _ in range(N_BURST)]
        for j in jobs: await m.wait_for_job(j.id)
    await m.shutdown()


def instructions(tree:str, n:int) -> int:
    "Instructions valgrind counted in the manager's process for a run of `n` bursts, with `tree` first on the path."
    out = subprocess.run(['valgrind', '--tool=cachegrind', '--cache-sim=no', '--cachegrind-out-file=/dev/null',
                          sys.executable, __file__, '--bursts', str(n)], capture_output=True, text=True, timeout=900,
                         env={**os.environ, 'PYTHONPATH': tree}, cwd='/tmp')
    found = re.search(r'I\s+refs:\s+([\d,]+)', out.stderr)
    if found is None: raise RuntimeError(f"valgrind gave no count:\n{out.stderr[-2000:]}")
    return int(found.group(1).replace(',', ''))


def main(trees:list):
    if shutil.which('valgrind') is None: sys.exit("valgrind is not installed")
    for tree in trees:
        base = instructions(tree, 0)
        per_job = [(instructions(tree, BURSTS) - base) / (BURSTS * N_BURST) for _ in range(2)]
        print(f"{tree}: {per_job[0]:,.0f} and {per_job[1]:,.0f} instructions per job")


if __name__ == '__main__':
    if sys.argv[1:2] == ['--bursts']: asyncio.run(bursts(int(sys.argv[2])))
    else: main(sys.argv[1:] or [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))])
