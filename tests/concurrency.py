"""Running a test's worker in several Python threads at once."""
from __future__ import annotations

import threading


def run_concurrently(worker, count: int, timeout: float = 300) -> None:
    """worker(i) for i in range(count), each in its own thread, all released together by a barrier; fails with the
    first exception any of them raised, or when one has not finished after `timeout` seconds."""
    errors, barrier = [], threading.Barrier(count)

    def run(i):
        try:
            barrier.wait()
            worker(i)
        except Exception as e:  # noqa: BLE001 - reported by the calling thread
            errors.append(e)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), f"a worker ran past {timeout} s"
    assert not errors, errors[0]
