"""A module the web process imports but a worker cannot: its entry point fails to import in the worker.

It stands for a dependency missing where workers run: it imports only in the test process (which has pytest loaded),
so it also fails in a fork server asked to preload it (not a multiprocessing child itself, so `parent_process()`
would not tell), as a missing dependency would."""
import sys

if 'pytest' not in sys.modules:
    raise ImportError("this module refuses to load in a worker process (a missing dependency there)")


def entry(request_queue, result_queue, response_queue): pass
