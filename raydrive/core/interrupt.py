"""Stop pure-Python code running in another thread: the one place raydrive does it.

``PyThreadState_SetAsyncExc`` raises an exception in a thread at its next bytecode, which stops
a tight loop or a ``time.sleep`` (a sleep returns early on the next signal check), not code
blocked inside C. The exception type should derive from ``BaseException`` so that an action's
``except Exception`` does not swallow it. Used by the local driver's ``cancel`` and the pipeline
actor's cancel watcher and deadlines.
"""

from __future__ import annotations

import ctypes

__all__ = ["JobCancelled", "raise_in_thread"]


class JobCancelled(BaseException):
    """Raised inside an action whose job was cancelled (a BaseException: ``except Exception``
    in the action does not swallow it)."""


def raise_in_thread(thread_id: int, error: type[BaseException]) -> bool:
    """Raise ``error`` in the thread ``thread_id`` (``threading.get_ident()``); False when no such
    thread is running Python code."""
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(error))
    if done > 1:  # more than one thread state matched: undo, as the C API's documentation asks
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
        return False
    return done == 1
