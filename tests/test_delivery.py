"""Delivery across crashes of the web process: at-least-once by default; at most once with durable_start."""
import collections, json, os, random, subprocess, sys, time
from pathlib import Path
import pytest

HERE = Path(__file__).parent
ENV = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(HERE.parent), str(HERE)])}


def crash_cycles(tmp_path, mode, cycles, seed=7):
    "Start the app on one journal, let it run `record` jobs for a random moment, SIGKILL it; repeat; then drain."
    journal, records = tmp_path / f'{mode}.db', tmp_path / f'{mode}.records'
    rng = random.Random(seed)
    script = [sys.executable, str(HERE / 'durable_cycle.py'), str(journal), str(records), mode]
    for _ in range(cycles):
        p = subprocess.Popen(script + ['10'], stdout=subprocess.PIPE, text=True, env=ENV)
        try:
            assert p.stdout.readline().strip() == 'submitted'
            time.sleep(rng.uniform(0, 0.3))  # the crash lands anywhere: jobs queued, running, just finished
        finally:
            p.kill()
            p.wait(10)
    out = subprocess.run(script + ['0', 'drain'], capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    state = json.loads(out.stdout.strip().splitlines()[-1])
    ran = collections.Counter(records.read_text().split()) if records.exists() else collections.Counter()
    return state, ran


def test_durable_start_never_runs_a_job_twice_across_sigkills(tmp_path):
    state, ran = crash_cycles(tmp_path, 'durable', cycles=20)
    statuses = collections.Counter(state['statuses'].values())
    twice = {j: n for j, n in ran.items() if n > 1}
    print(f"durable_start, 20 SIGKILL cycles: 200 submitted, {state['total']} in the journal {dict(statuses)}; "
          f"ran: {len(ran)}, twice: {len(twice)}")
    assert not twice, twice
    assert set(statuses) <= {'completed', 'interrupted', 'failed', 'cancelled'} and state['total'] >= 100
    assert set(ran) <= set(state['statuses'])  # everything that ran is in the journal


def test_default_delivery_is_at_least_once(tmp_path):
    "Without durable_start a crash re-runs jobs whose start was not yet on disk: none is lost, some may run twice."
    state, ran = crash_cycles(tmp_path, 'default', cycles=20)
    statuses = collections.Counter(state['statuses'].values())
    twice = sum(1 for n in ran.values() if n > 1)
    print(f"default, 20 SIGKILL cycles: 200 submitted, {state['total']} in the journal {dict(statuses)}; "
          f"ran: {len(ran)}, twice: {twice}")
    assert set(statuses) <= {'completed', 'interrupted', 'failed', 'cancelled'}
    assert all(ran[j] >= 1 for j, s in state['statuses'].items() if s == 'completed')
