"""The owner's managers in tests/test_remote.py: the demo manager, with a journal where CJM_TEST_JOURNAL says."""
import os

from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager


def managers():
    return [DemoJobManager(worker_config=WorkerConfig(max_workers=2), job_store=os.environ['CJM_TEST_JOURNAL'])]


def only_their_own(request, job, action):
    "The owner's access rule (`serve --access remote_factory:only_their_own`): an admin may do anything; others see and act on their own jobs only."
    from cjm_workers.serve import forwarded_identity
    who = forwarded_identity(request) or {}
    return who.get('role') == 'admin' or (who.get('user') is not None and who.get('user') == job.owner)
