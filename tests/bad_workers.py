"""Worker entry points that cannot start, for the start-error tests (spawned workers import them by name)."""
from cjm_workers.core.worker import base_worker_process


def _no_gpu(): raise RuntimeError("no GPU found: CUDA_VISIBLE_DEVICES is empty")

def factory_raises_worker(request_queue, result_queue, response_queue):
    base_worker_process(request_queue, result_queue, response_queue, plugin_manager_factory=_no_gpu)
