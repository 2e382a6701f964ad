"""A module the web process imports but a worker cannot: its entry point fails to import in the worker."""
import multiprocessing

if multiprocessing.parent_process() is not None:
    raise ImportError("this module refuses to load in a worker process (a missing dependency there)")


def entry(request_queue, result_queue, response_queue): pass
