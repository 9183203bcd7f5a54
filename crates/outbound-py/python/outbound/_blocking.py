"""Where a blocking call into the native core runs.

The core releases the GIL while it waits on the network, so threads keep running. Under
gevent that is not enough: the hub and every greenlet share one OS thread, which a blocking
call would freeze. When gevent has monkey-patched the process (Dify's gevent workers), the
call runs in gevent's thread pool and only the calling greenlet waits.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return False
    try:
        return bool(monkey.is_module_patched("socket") or monkey.is_module_patched("threading"))
    except Exception:  # an unusual gevent: behave as without it
        return False


def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, in gevent's thread pool when gevent has patched the process."""
    if _gevent_patched():
        import gevent  # type: ignore[import-untyped]

        result: T = gevent.get_hub().threadpool.apply(fn, args, kwargs)
        return result
    return fn(*args, **kwargs)
