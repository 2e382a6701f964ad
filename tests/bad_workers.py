"""Worker entry points that cannot start, for the start-error tests (spawned workers import them by name)."""
from cjm_workers.core.worker import base_worker_process


def _no_gpu(): raise RuntimeError("no GPU found: CUDA_VISIBLE_DEVICES is empty")

def factory_raises_worker(request_queue, result_queue, response_queue):
    base_worker_process(request_queue, result_queue, response_queue, plugin_manager_factory=_no_gpu)


class _FlaggedFactory:
    "A plugin manager factory that refuses once the file named by CJM_TEST_FAIL_START_FILE exists."
    def __init__(self):
        import os
        from cjm_workers.demo.plugins import DemoPluginManager
        if os.path.exists(os.environ.get('CJM_TEST_FAIL_START_FILE', '/nonexistent')):
            raise RuntimeError("the factory refuses: the flag file exists")
        self.pm = DemoPluginManager()
    def __getattr__(self, name): return getattr(self.pm, name)

def fails_once_flagged_worker(request_queue, result_queue, response_queue):
    base_worker_process(request_queue, result_queue, response_queue, plugin_manager_factory=_FlaggedFactory,
                        supports_streaming=True)
