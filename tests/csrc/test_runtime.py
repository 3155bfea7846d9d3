"""Tests for the C runtime (csrc/runtime.c) through its cffi binding.

Loop bodies are Python functions reached through the `_tl_test_body` extern "Python"
callback; each call gets its own Recorder (passed as a cffi handle) that logs the
chunks it was given and the thread that ran each one.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import csrc
from csrc import ffi, lib

TIMEOUT_S = 20.0


class Recorder:
    """Per-call state of a loop body: chunks seen, threads used, errors raised."""

    def __init__(self, inner=None):
        self.chunks: list[tuple[int, int, int]] = []  # (begin, end, thread id)
        self.errors: list[BaseException] = []
        self.inner = inner  # optional extra work per chunk: inner(begin, end)

    def __call__(self, begin: int, end: int) -> None:
        self.chunks.append((begin, end, threading.get_ident()))
        if self.inner is not None:
            self.inner(begin, end)

    @property
    def threads(self) -> set[int]:
        return {tid for _, _, tid in self.chunks}


@ffi.def_extern()
def _tl_test_body(ctx, begin, end):
    rec = ffi.from_handle(ctx)
    try:
        rec(begin, end)
    except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in C
        rec.errors.append(exc)


def parallel_for(n: int, grain: int, inner=None) -> Recorder:
    rec = Recorder(inner)
    handle = ffi.new_handle(rec)
    assert lib.tl_parallel_for(lib._tl_test_body, handle, n, grain) == lib.TL_OK
    assert not rec.errors, rec.errors
    return rec


def assert_covers(rec: Recorder, n: int, grain: int | None = None) -> None:
    """Every index of [0, n) is covered exactly once, by non-empty chunks <= grain."""
    spans = sorted((b, e) for b, e, _ in rec.chunks)
    pos = 0
    for begin, end in spans:
        assert begin == pos, f"gap or overlap at {pos}: chunks {spans}"
        assert end > begin
        if grain is not None:
            assert end - begin <= grain
        pos = end
    assert pos == max(n, 0)


def run_with_timeout(fn, timeout=TIMEOUT_S):
    """Runs fn() on a daemon thread; fails (instead of hanging) if it does not finish."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"did not finish within {timeout} s (deadlock?)"
    if "error" in result:
        raise result["error"]
    return result.get("value")


@pytest.fixture(autouse=True)
def restore_threads():
    before = csrc.num_threads()
    yield
    csrc.set_num_threads(before)


# ------------------------------------------------------------------ parallel_for


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 7])
def test_parallel_for_covers_every_index_once(threads):
    csrc.set_num_threads(threads)
    for n in (0, 1, 2, 3, 7, 97, 1000, 4099):
        for grain in (-1, 0, 1, 3, 64, 5000):
            rec = parallel_for(n, grain)
            assert_covers(rec, n, grain if grain > 0 and threads > 1 and n > grain else None)


@pytest.mark.parametrize(("threads", "n"), [(4, 1000), (2, 32), (2, 2), (3, 97)])
def test_auto_grain_is_guided(threads, n):
    """Each chunk a share 1 / (2 * threads) of what is left, at least one index: the same chunks whichever
    thread claims them."""
    csrc.set_num_threads(threads)
    rec = parallel_for(n, 0)
    assert_covers(rec, n)
    sizes, begin = [], 0
    while begin < n:
        sizes.append(max(1, (n - begin) // (2 * threads)))
        begin += sizes[-1]
    assert [e - b for b, e, _ in sorted(rec.chunks)] == sizes


def test_negative_n_is_a_no_op():
    rec = parallel_for(-5, 1)
    assert rec.chunks == []


def test_null_body_is_an_error_with_location():
    assert lib.tl_parallel_for(ffi.NULL, ffi.NULL, 10, 1) == lib.TL_EINVAL
    assert "runtime.c:" in csrc.last_error() and "fn is NULL" in csrc.last_error()
    assert lib.tl_parallel_for(ffi.NULL, ffi.NULL, 0, 1) == lib.TL_OK  # n <= 0 first


@pytest.mark.parametrize(
    ("threads", "n", "grain"), [(4, 1, 0), (4, 5, 10), (4, 5, 5), (1, 1000, 3)]
)
def test_small_or_single_threaded_work_runs_inline(threads, n, grain):
    csrc.set_num_threads(threads)
    rec = parallel_for(n, grain)
    assert [(b, e) for b, e, _ in rec.chunks] == [(0, n)]
    assert rec.threads == {threading.get_ident()}


def test_workers_take_part():
    csrc.set_num_threads(2)
    # Each chunk sleeps with the GIL released, so the worker gets a chance to claim some.
    rec = parallel_for(40, 1, inner=lambda b, e: time.sleep(0.002))
    assert_covers(rec, 40, 1)
    assert len(rec.threads) == 2


def test_concurrent_callers_each_get_full_coverage():
    csrc.set_num_threads(4)
    results: list[list[Recorder]] = [[] for _ in range(8)]

    def caller(i):
        for rep in range(10):
            results[i].append((2000 + 17 * i + rep, parallel_for(2000 + 17 * i + rep, 3)))

    def run_all():
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run_with_timeout(run_all)
    assert all(len(r) == 10 for r in results)
    for per_thread in results:
        for n, rec in per_thread:
            assert_covers(rec, n)


def test_nested_calls_run_inline_without_deadlock():
    csrc.set_num_threads(3)
    inner_recs: list[tuple[int, Recorder]] = []

    def inner(begin, end):
        rec = parallel_for(50, 1)  # from inside a body: must run inline on this thread
        inner_recs.append((threading.get_ident(), rec))

    outer = run_with_timeout(lambda: parallel_for(30, 1, inner=inner))
    assert_covers(outer, 30, 1)
    assert len(inner_recs) == 30
    for tid, rec in inner_recs:
        assert [(b, e, t) for b, e, t in rec.chunks] == [(0, 50, tid)]


def test_call_through_the_exported_address():
    csrc.set_num_threads(2)
    address = csrc.parallel_for_address()
    assert address == int(ffi.cast("uintptr_t", ffi.addressof(lib, "tl_parallel_for")))
    proto = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64
    )
    call = proto(address)  # as JIT code would: through a plain function pointer
    rec = Recorder()
    handle = ffi.new_handle(rec)
    body = int(ffi.cast("uintptr_t", ffi.addressof(lib, "_tl_test_body")))
    assert call(body, int(ffi.cast("uintptr_t", handle)), 777, 10) == 0
    assert_covers(rec, 777, 10)


def test_idle_pool_burns_no_cpu():
    csrc.set_num_threads(2)
    parallel_for(100, 1)  # the pool is started and now idle
    time.sleep(0.05)  # past the workers' short spin
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(0.3)
    cpu = time.process_time() - cpu0
    assert cpu < 0.05, f"idle process used {cpu:.3f} s CPU in {time.perf_counter() - wall0:.2f} s"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_working_pool():
    csrc.set_num_threads(2)
    parallel_for(100, 1)  # the parent's pool is running
    pid = os.fork()
    if pid == 0:  # child: only this thread exists; the pool must start afresh
        try:
            rec = parallel_for(40, 1, inner=lambda b, e: time.sleep(0.002))
            assert_covers(rec, 40, 1)
            os._exit(0 if len(rec.threads) == 2 else 2)
        except BaseException:  # noqa: BLE001 - reported through the exit status
            os._exit(1)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("forked child hung in parallel_for")


def _os_threads(expect: int | None = None) -> int:
    """This process's threads. With `expect`, wait up to a second for that count: a joined thread leaves
    /proc a moment after pthread_join returns (the kernel wakes the joiner before it reaps the thread)."""
    deadline = time.monotonic() + 1.0
    while True:
        n = len(os.listdir("/proc/self/task"))
        if n == expect or expect is None or time.monotonic() > deadline:
            return n
        time.sleep(0.005)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_pool_starts_lazily_and_tiny_work_never_starts_it():
    csrc.set_num_threads(1)  # joins any workers
    time.sleep(0.05)  # (and lets them leave /proc)
    base = _os_threads()
    csrc.set_num_threads(4)
    assert _os_threads() == base  # created on first real use, not here
    for n, grain in ((1, 0), (5, 10), (8, 8)):
        parallel_for(n, grain)
    assert _os_threads() == base  # the inline path wakes and starts nothing
    assert_covers(parallel_for(100, 1), 100, 1)
    assert _os_threads() == base + 3  # the caller is the fourth
    csrc.set_num_threads(2)
    assert _os_threads(base) == base  # old workers joined


# ------------------------------------------------------------------ thread count


def test_set_and_get_num_threads():
    for n in (1, 3, 2, 5):
        csrc.set_num_threads(n)
        assert csrc.num_threads() == n == lib.tl_get_num_threads()
        rec = parallel_for(300, 7)  # the pool restarts at the new size
        assert_covers(rec, 300, 7 if n > 1 else 300)


@pytest.mark.parametrize("bad", [0, -1, 10**6])
def test_set_num_threads_rejects_bad_counts(bad):
    before = csrc.num_threads()
    assert lib.tl_set_num_threads(bad) == lib.TL_EINVAL
    assert "runtime.c:" in csrc.last_error() and "set_num_threads" in csrc.last_error()
    assert csrc.num_threads() == before
    with pytest.raises((ValueError, RuntimeError)):
        csrc.set_num_threads(bad)
    with pytest.raises(TypeError):
        csrc.set_num_threads(2.0)


def test_set_num_threads_inside_a_body_fails_cleanly():
    csrc.set_num_threads(2)
    statuses: list[int] = []
    run_with_timeout(
        lambda: parallel_for(8, 1, inner=lambda b, e: statuses.append(lib.tl_set_num_threads(3)))
    )
    assert len(statuses) == 8 and set(statuses) == {lib.TL_EBUSY}
    assert csrc.num_threads() == 2


def _num_threads_in_subprocess(env_value: str) -> int:
    env = dict(os.environ, TILELANG_NUM_THREADS=env_value)
    code = "import csrc; print(csrc.num_threads())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_default_thread_count_from_env_or_affinity():
    assert _num_threads_in_subprocess("3") == 3
    assert _num_threads_in_subprocess("zero") == len(os.sched_getaffinity(0))


# ------------------------------------------------------------------ memory


@pytest.mark.parametrize("alignment", [8, 16, 64, 128, 4096])
def test_aligned_alloc_alignment(alignment):
    for size in (0, 1, 100, 1 << 20):
        p = lib.tl_aligned_alloc(alignment, size)
        assert p != ffi.NULL
        assert int(ffi.cast("uintptr_t", p)) % alignment == 0
        lib.tl_aligned_free(p)


@pytest.mark.parametrize("alignment", [0, 3, 4, 24, 100])
def test_aligned_alloc_rejects_bad_alignment(alignment):
    assert lib.tl_aligned_alloc(alignment, 64) == ffi.NULL
    assert "runtime.c:" in csrc.last_error() and "alignment" in csrc.last_error()
    with pytest.raises((RuntimeError, ValueError)):
        csrc.aligned_empty(16, alignment=alignment)


def test_aligned_alloc_failure_is_reported():
    assert lib.tl_aligned_alloc(64, 2**63) == ffi.NULL
    assert "runtime.c:" in csrc.last_error()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint16])
@pytest.mark.parametrize("shape", [(0,), (7,), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("alignment", [64, 256])
def test_aligned_empty(shape, dtype, alignment):
    a = csrc.aligned_empty(shape, dtype, alignment=alignment)
    assert a.shape == shape and a.dtype == np.dtype(dtype)
    assert a.flags.c_contiguous and a.flags.writeable
    assert a.ctypes.data % alignment == 0
    a[...] = 1
    assert int(a.sum()) == a.size


def test_aligned_empty_memory_lives_with_the_array():
    arrays = []
    for i in range(50):
        a = csrc.aligned_empty((256,), np.int64)
        a[:] = i
        arrays.append(a[10:20])  # a view alone must keep the allocation alive
    gc.collect()
    churn = [csrc.aligned_empty((256,), np.int64) for _ in range(50)]
    for c in churn:
        c[:] = -1
    for i, view in enumerate(arrays):
        assert (view == i).all()


# ------------------------------------------------------------------ AMX and timers


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return "amx_tile" in f.read()
    except OSError:
        return False


def test_request_amx_returns_a_cached_bool():
    granted = csrc.request_amx()
    assert isinstance(granted, bool)
    assert csrc.request_amx() is granted
    assert lib.tl_request_amx() == int(granted)  # idempotent in C too
    if sys.platform == "linux" and os.uname().machine == "x86_64" and _cpu_has_amx():
        assert granted, csrc.last_error()


def test_now_ns_is_monotonic_and_in_nanoseconds():
    stamps = [csrc.now_ns() for _ in range(1000)]
    assert all(b >= a for a, b in itertools.pairwise(stamps))
    t0, p0 = csrc.now_ns(), time.perf_counter_ns()
    time.sleep(0.02)
    elapsed, reference = csrc.now_ns() - t0, time.perf_counter_ns() - p0
    assert 0.02e9 <= elapsed and abs(elapsed - reference) < 0.01e9


def test_cycles_advance():
    counts = [csrc.cycles() for _ in range(1000)]
    assert all(b >= a for a, b in itertools.pairwise(counts))
    c0 = csrc.cycles()
    time.sleep(0.01)
    assert csrc.cycles() - c0 > 10_000  # any real counter ticks > 1 MHz
