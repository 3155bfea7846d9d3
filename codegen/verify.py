"""The IR verifier: every value defined before use, and every node's shapes and dtypes consistent."""
from __future__ import annotations

from codegen import dtypes as dt
from codegen.ir import BINARY, COMPARE, UNARY, Block, Kernel, Node, Op, dot_panels, panel_group


def _check(n: Node) -> str | None:
    s = [v.type for v in n.srcs]
    r = [v.type for v in n.results]
    op = n.op
    if op in BINARY or op in COMPARE:
        if len(s) != 2 or s[0] != s[1]:
            return f"operands differ: {s}"
        if r[0].shape != s[0].shape or (op in COMPARE) != (r[0].dtype == dt.bool_ and op in COMPARE):
            return f"result {r[0]} does not match operands {s[0]}"
    elif op in UNARY or op == Op.CAST:
        if r[0].shape != s[0].shape:
            return f"shape changes {s[0]} -> {r[0]}"
    elif op == Op.WHERE:
        if s[0].dtype != dt.bool_ or not s[0].shape == s[1].shape == s[2].shape == r[0].shape:
            return f"where operands {s} -> {r[0]}"
    elif op == Op.LOAD:
        if r[0].shape != n.arg.extents or len(s) != len(n.arg.kept):
            return f"load of {n.arg} gives {r[0]}"
    elif op == Op.STORE:
        if s[0].shape != n.arg.extents or len(s) - 1 != len(n.arg.kept):
            return f"store of {s[0]} into {n.arg}"
    elif op == Op.BROADCAST:
        if s[0].shape and (len(s[0].shape) != len(r[0].shape) or
                           any(a not in (1, b) for a, b in zip(s[0].shape, r[0].shape))):
            return f"cannot broadcast {s[0]} to {r[0]}"
    elif op == Op.INTERLEAVE:
        if s[0] != s[1] or not s[0].shape or r[0].dtype != s[0].dtype or \
                r[0].shape != (*s[0].shape[:-1], 2 * s[0].shape[-1]):
            return f"interleave {s} -> {r[0]}"
    elif op == Op.DOT:
        a, b = s[0].shape, s[1].shape
        a_panels, b_panels = dot_panels(n)
        if a_panels:  # a: (Q, K, R) row panels of float32
            a = (a[0] * a[2], a[1]) if len(a) == 3 and s[0].dtype == dt.float32 else ()
        if b_panels:  # b: (P, K/G, G*W) column panels of k-groups
            G = panel_group(s[1].dtype)
            ok = len(b) == 3 and len(a) == 2 and a[1] == G * b[1] and r[0].shape == (a[0], b[0] * (b[2] // G))
        else:
            ok = len(a) == 2 and len(b) == 2 and a[1] == b[0] and r[0].shape == (a[0], b[1])
        if not ok or (len(s) == 3 and s[2] != r[0]):
            return f"dot {s} -> {r[0]}"
    elif op == Op.FOR:
        body = n.regions[0]
        if [v.type for v in body.yields] != r or [v.type for v in body.args[1:]] != r:
            return f"loop carries {r} but its body yields {[v.type for v in body.yields]}"
    elif op == Op.IF:
        for blk in n.regions:
            if [v.type for v in blk.yields] != r:
                return f"branch yields {[v.type for v in blk.yields]}, expected {r}"
    return None


def verify(kernel: Kernel) -> list[str]:
    errors: list[str] = []

    def block(b: Block, defined: set) -> None:
        defined = defined | set(b.args)
        for n in b.nodes:
            for v in n.srcs:
                if v not in defined:
                    errors.append(f"{n.op.name} at {n.loc}: uses {v!r} before its definition")
            msg = _check(n)
            if msg:
                errors.append(f"{n.op.name} at {n.loc}: {msg}")
            for r in n.regions:
                block(r, defined)
            defined |= set(n.results)
        for v in b.yields:
            if v not in defined:
                errors.append(f"yield of undefined {v!r}")

    block(kernel.body, set())
    return errors
