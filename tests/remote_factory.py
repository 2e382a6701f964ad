"""The owner's managers in tests/test_remote.py: the demo manager, with a journal where CJM_TEST_JOURNAL says."""
import os

from cjm_workers.core.config import WorkerConfig
from cjm_workers.demo.plugins import DemoJobManager


def managers():
    return [DemoJobManager(worker_config=WorkerConfig(max_workers=2), job_store=os.environ['CJM_TEST_JOURNAL'])]
