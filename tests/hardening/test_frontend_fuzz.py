"""Hypothesis-generated kernel sources, valid and broken: each compiles and runs, or raises the
language's KernelError located in the kernel's file. Never an internal exception, never a crash."""
import importlib.util
import itertools
import os
import tempfile
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tilelang as tl

LEAVES = st.sampled_from(["t0", "t1", "s", "1.5", "2", "0", "B", "x.shape[0]", "i", "undefined_name", "'text'",
                          "tl.zeros((B,))", "tl.arange(0, B)", "tl.full((B, 1), 3.0)", "None"])
UNARY = st.sampled_from(["tl.exp({})", "tl.log(tl.abs({}) + 1.0)", "tl.sqrt(tl.abs({}))", "-({})", "({}).to(tl.bfloat16)",
                         "({}).to(tl.float32)", "({}).sum(axis=0, keepdims=True)", "({}).max()", "({}).T",
                         "tl.maximum({}, 0.0)", "({}).reshape(B, 1)", "abs({})", "({})[0]", "tl.exp2({}, 3)",
                         "({}).to(tl.int32)", "tl.where({} > 0, 1.0, 2.0)", "({}).min(axis=5)"])
BINARY = st.sampled_from(["+", "-", "*", "/", "//", "%", "<", ">=", "==", "&", "@"])


def exprs():
    return st.recursive(LEAVES, lambda inner: st.one_of(
        st.tuples(UNARY, inner).map(lambda t: t[0].format(t[1])),
        st.tuples(inner, BINARY, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, inner).map(lambda t: f"tl.dot(({t[0]}).reshape(B, 1), ({t[1]}).reshape(1, B))"),
    ), max_leaves=6)


STMTS = st.one_of(
    exprs().map(lambda e: f"t1 = {e}"),
    exprs().map(lambda e: f"t0 = {e}"),
    exprs().map(lambda e: f"s = {e}"),
    exprs().map(lambda e: f"if {e}:\n            t0 = t0 + 1.0"),
    exprs().map(lambda e: f"for j in tl.range(2):\n            t0 = t0 + ({e})"),
    st.sampled_from(["while False:\n            pass", "t0 = x[i * B:i * B + x.shape[0], 0]", "t0 = x[0:B:2]",
                     "y[0] = t0", "import os", "t0 += x[i * B:(i + 1) * B]", "del t0", "t0, t1 = t1",
                     "assert B > 100, 'too small'", "t0 = x[i * B:(i + 1) * B, 0:1]", "return t0"]),
)

_counter = itertools.count()
_dir = tempfile.mkdtemp(prefix="tl-fuzz-")


def load(src: str):
    path = os.path.join(_dir, f"fuzz_{next(_counter)}.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # generated nonsense like `None[0]` draws SyntaxWarnings
        warnings.simplefilter("ignore")
        spec.loader.exec_module(mod)
    return mod, path


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=st.lists(STMTS, min_size=1, max_size=4), out=exprs())
def test_fuzzed_kernels_compile_or_fail_cleanly(body, out):
    lines = "\n        ".join(body)
    src = f"""import tilelang as tl


@tl.jit
def k(x, y, s, B: tl.constexpr = 16):
    for i in tl.grid(tl.cdiv(x.shape[0], B)):
        t0 = x[i * B:(i + 1) * B]
        t1 = t0 * 2.0
        {lines}
        y[i * B:(i + 1) * B] = {out}
"""
    mod, path = load(src)
    x = np.linspace(-3, 3, 40, dtype=np.float32)
    y = np.zeros(40, np.float32)
    try:
        mod.k(x, y, 0.5)
    except tl.KernelError as e:
        text = str(e)
        assert f"--> {path}:" in text, text
        for internal in ("codegen/", "tilelang/", "Traceback"):
            assert internal not in text, text
    # any other exception type propagates and fails the test
