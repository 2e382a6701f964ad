"""Chaos: hundreds of jobs while workers are SIGKILLed at random. Every job ends, none is lost, none runs twice."""
import asyncio, collections, os, random, signal
from conftest import gone


async def test_jobs_under_random_worker_kills_all_end_none_lost_none_twice(make_manager, tmp_path):
    records = tmp_path / 'ran.txt'
    m = make_manager(max_workers=2, crash_loop_deaths=0)  # kills from outside: no plugin is to blame
    await m.start()
    rng = random.Random(3)
    jobs = [await m.start_job('record', path=str(records), seconds=rng.choice((0, 0.002, 0.01))) for _ in range(400)]
    kills, killed = 30, []
    async def killer():
        while len(killed) < kills:
            await asyncio.sleep(rng.uniform(0.01, 0.05))
            pids = [w['pid'] for w in m.health()['workers'] if w['pid'] and w['state'] == 'RUNNING']
            if pids:
                pid = rng.choice(pids)
                try: os.kill(pid, signal.SIGKILL)
                except ProcessLookupError: continue
                killed.append(pid)
    k = asyncio.create_task(killer())
    try:
        for j in jobs: await m.wait_for_job(j.id, 120)
    finally: k.cancel()
    status = collections.Counter(j.status for j in jobs)
    ran = collections.Counter(records.read_text().split())
    twice = [j for j, n in ran.items() if n > 1]
    print(f"chaos: {len(jobs)} jobs, {len(killed)} worker SIGKILLs: {dict(status)}; "
          f"{sum(j.is_terminal for j in jobs) / len(jobs):.0%} terminal, lost 0, ran twice {len(twice)}")
    assert all(j.is_terminal for j in jobs) and not twice
    assert set(status) <= {'completed', 'failed'} and status['completed'] >= 200
    assert all('SIGKILL' in j.error for j in jobs if j.status == 'failed')
    assert all(ran[j.id] == 1 for j in jobs if j.status == 'completed')  # a completed job ran exactly once
    ok = await m.start_job('echo', text='still serving')
    assert (await m.wait_for_job(ok.id, 30)).status == 'completed' and m.health()['state'] == 'RUNNING'
    await m.shutdown()
    assert all(gone(pid) for pid in killed)
