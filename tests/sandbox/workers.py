"""Helpers for the tests of dying jails."""

from __future__ import annotations

import threading
import time

from codeio_dagster.sandbox import Executor, Job


def job(id_: str, body: str, **kw) -> Job:
    return Job(id=id_, code="def f(*a, **k):\n" + body, call="f", **kw)


def kill_light_worker_soon(ex: Executor, settings):
    """Warm the one light jail, have its process killed half a second later; that worker."""
    ex.run([job("warm", "    return 1")])
    worker = ex._pools[(settings.hash_seed, frozenset())][0]
    proc = worker.proc

    def kill_soon() -> None:
        time.sleep(0.5)
        proc.kill()

    threading.Thread(target=kill_soon).start()
    return worker
