"""Errors a kernel author causes point at their line (found by marker comments), never at ours."""
import inspect
import os
import re

import numpy as np
import pytest

import tilelang as tl


def marker_line(fn, marker: str) -> int:
    lines, first = inspect.getsourcelines(fn.fn)
    for i, line in enumerate(lines):
        if f"# {marker}" in line:
            return first + i
    raise AssertionError(marker)


def error_of(kernel, *args, **kwargs) -> tl.KernelError:
    with pytest.raises(tl.KernelError) as e:
        kernel(*args, **kwargs)
    return e.value


def check(err: tl.KernelError, kernel, marker: str, phrase: str) -> None:
    """`err` points at the `# marker` line of `kernel` in its own file, says `phrase`, shows a caret, and
    names nothing of ours (the author's file is left out of that test: it may sit under a codegen/ too)."""
    text = str(err)
    name = re.escape(os.path.basename(inspect.getsourcefile(kernel.fn)))
    line = marker_line(kernel, marker)
    assert re.search(rf"--> .*{name}:{line}:\d+", text), text
    assert phrase in text, text
    assert "^" in text
    ours = re.sub(rf"\S*{name}", "", text)
    for internal in ("codegen/", "semantic.py", "frontend.py", "Traceback"):
        assert internal not in ours, text


x = np.zeros((10, 10), np.float32)
y = np.zeros((10, 10), np.float32)


def test_non_constant_extent():
    @tl.jit
    def k(x, y):
        n = x.shape[0]
        t = x[0:n, 0:4]  # here
        y[0:4, 0:4] = t
    check(error_of(k, x, y), k, "here", "not a compile-time constant")


def test_shape_mismatch_names_shapes():
    @tl.jit
    def k(x, y):
        a = x[0:4, 0:8]
        b = x[0:4, 0:3]
        y[0:4, 0:8] = a + b  # here
    err = error_of(k, x, y)
    check(err, k, "here", "(4, 8) and (4, 3)")


def test_dot_inner_dims():
    @tl.jit
    def k(x, y):
        y[0:4, 0:4] = tl.dot(x[0:4, 0:8], x[0:4, 0:4])  # here
    check(error_of(k, x, y), k, "here", "inner dimensions differ")


def test_unknown_name():
    @tl.jit
    def k(x, y):
        y[0:4, 0:4] = undefined_thing  # here  # noqa: F821
    check(error_of(k, x, y), k, "here", "`undefined_thing` is not defined")


def test_unsupported_construct():
    @tl.jit
    def k(x, y):
        while True:  # here
            pass
    check(error_of(k, x, y), k, "here", "while loops are not supported")


def test_wrong_number_of_indices():
    @tl.jit
    def k(x, y):
        y[0:4, 0:4] = x[0:4]  # here
    check(error_of(k, x, y), k, "here", "2 dims but 1 indices")


def test_loop_carried_shape_change():
    @tl.jit
    def k(x, y):
        acc = 0.0
        for i in tl.range(3):  # here
            acc = acc + x[0:4, 0:4]
        y[0:4, 0:4] = acc
    check(error_of(k, x, y), k, "here", "changes shape")


def test_runtime_value_as_python_bool():
    @tl.jit
    def k(x, y):
        t = x[0:4, 0:4]
        if t:  # here
            y[0:4, 0:4] = t
    check(error_of(k, x, y), k, "here", "scalar condition")


def test_python_type_error_is_located():
    @tl.jit
    def k(x, y, B: tl.constexpr = 4):
        z = B + "s"  # here
        y[0:4, 0:4] = x[0:4, 0:4] * z
    check(error_of(k, x, y), k, "here", "TypeError")


def test_error_in_helper_points_into_the_helper():
    @tl.jit
    def helper(t):
        return t + tl.zeros((3, 3))  # here

    @tl.jit
    def k(x, y):
        y[0:4, 0:4] = helper(x[0:4, 0:4])
    check(error_of(k, x, y), helper, "here", "do not broadcast")


def test_bad_arguments_fail_before_native_code():
    from benchmarks.kernels import add
    with pytest.raises(tl.KernelError, match="dtype float64"):
        add(np.zeros(4), np.zeros(4), np.zeros(4))
    with pytest.raises(tl.KernelError, match="missing .*required"):
        add(np.zeros(4, np.float32))
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(tl.KernelError, match="read-only"):
        add(np.ones(4, np.float32), np.ones(4, np.float32), ro)
    with pytest.raises(tl.KernelError, match="zero-stride"):
        alias = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (4,), (0,), writeable=True)
        add(np.ones(4, np.float32), np.ones(4, np.float32), alias)
    with pytest.raises(tl.KernelError, match="a list"):
        add([1.0], np.ones(4, np.float32), np.ones(4, np.float32))
