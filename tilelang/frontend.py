"""From a Python function's AST to tile IR.

The walker evaluates compile-time Python (constexprs, shapes' ranks, `if` on constants, `for` over
`range`) as Python, and records everything that depends on runtime data as tile IR. Any error is
re-raised as a `KernelError` located at the innermost expression being evaluated.
"""
from __future__ import annotations

import ast
import builtins
import inspect
import linecache
import operator
import textwrap

from codegen import dtypes as dt
from codegen.builder import Builder
from codegen.ir import CompileError, Kernel, Loc, Op, Param, Type, Value
from tilelang import language as tl
from tilelang import semantic as sem
from tilelang.errors import KernelError
from tilelang.semantic import Index, Tensor, Tile, wrap

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
           ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
           ast.LShift: operator.lshift, ast.RShift: operator.rshift}
_CMPOPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
           ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Is: operator.is_, ast.IsNot: operator.is_not,
           ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert, ast.Not: operator.not_}


class Source:
    """A function's parsed source, with what is needed to locate its lines."""

    def __init__(self, fn):
        self.fn = fn
        lines, first = _source_lines(fn)
        self.file = fn.__code__.co_filename
        self.first = first
        self.text = textwrap.dedent("".join(lines))
        self.indent = len(lines[0]) - len(lines[0].lstrip())
        self.lines = self.text.splitlines()
        tree = ast.parse(self.text)
        self.tree = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        if isinstance(self.tree, ast.AsyncFunctionDef):
            raise KernelError("kernels cannot be async", self.loc(self.tree))
        names = dict(fn.__globals__)
        if fn.__closure__:
            names.update(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__)))
        self.names = names

    def loc(self, node: ast.AST) -> Loc:
        line = getattr(node, "lineno", 1)
        text = self.lines[line - 1] if line - 1 < len(self.lines) else ""
        end = node.end_col_offset if getattr(node, "end_lineno", None) == line else len(text)
        return Loc(self.file, self.first + line - 1, node.col_offset + self.indent,
                   " " * self.indent + text, (end or 0) + self.indent)


def _source_lines(fn) -> tuple[list[str], int]:
    """The lines of a function's definition (decorators included) and its first line number: the
    indented block after the def, read from linecache (inspect's tokenizer is slow on a cold start)."""
    first = fn.__code__.co_firstlineno
    lines = linecache.getlines(fn.__code__.co_filename)
    if not lines or first > len(lines):
        try:
            return inspect.getsourcelines(fn)
        except (OSError, TypeError) as e:
            raise KernelError(f"cannot read the source of {fn.__name__!r}: {e}") from None
    head = lines[first - 1]
    indent = len(head) - len(head.lstrip())
    end, in_header = first - 1, True  # the header: decorators and the def line(s), up to its colon
    while end < len(lines):
        line = lines[end]
        code = line.split("#")[0].rstrip()
        if code.strip():
            if not in_header and len(line) - len(line.lstrip()) <= indent:
                break
            if in_header and code.endswith(":"):
                in_header = False
        end += 1
    block = lines[first - 1:end]
    try:
        ast.parse(textwrap.dedent("".join(block)))
    except SyntaxError:  # something unusual (e.g. a multi-line string at column 0): let inspect decide
        return inspect.getsourcelines(fn)
    return block, first


def assigned_names(stmts) -> set[str]:
    out: set[str] = set()
    for s in stmts:
        for n in ast.walk(s):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                out.add(n.id)
    return out


class _Return(Exception):
    def __init__(self, value):
        self.value = value


class Walker:
    """Walks one function body (the kernel, or an inlined @tl.jit helper) with its own names."""

    def __init__(self, src: Source, b: Builder, env: dict):
        self.src, self.b, self.env = src, b, env

    # ---- errors and locations ---------------------------------------------------------------
    def _guard(self, node, fn, *args):
        prev = self.b.loc
        self.b.loc = self.src.loc(node)
        try:
            return fn(*args)
        except (KernelError, _Return):
            raise
        except CompileError as e:
            raise KernelError(e.msg, e.loc or self.b.loc) from None
        except RecursionError:
            raise KernelError("kernel nesting too deep", self.b.loc) from None
        except Exception as e:  # an error of the author's Python (TypeError, ZeroDivisionError, ...)
            raise KernelError(f"{type(e).__name__}: {e}", self.b.loc) from None
        finally:
            self.b.loc = prev

    def error(self, node, msg: str):
        raise CompileError(msg, self.src.loc(node))

    # ---- statements -------------------------------------------------------------------------
    def run(self, stmts) -> None:
        for s in stmts:
            self._guard(s, self.stmt, s)

    def stmt(self, s) -> None:
        method = getattr(self, "stmt_" + type(s).__name__, None)
        if method is None:
            self.error(s, f"unsupported Python construct in a kernel: {type(s).__name__}")
        method(s)

    def stmt_Expr(self, s):
        if not isinstance(s.value, ast.Constant):  # docstrings are ignored
            self.eval(s.value)

    def stmt_Pass(self, s):
        pass

    def stmt_Assign(self, s):
        value = self.eval(s.value)
        for t in s.targets:
            self.assign(t, value)

    def stmt_AnnAssign(self, s):
        if s.value is not None:
            self.assign(s.target, self.eval(s.value))

    def stmt_AugAssign(self, s):
        op = _BINOPS[type(s.op)]
        if isinstance(s.target, ast.Subscript):
            base = self.eval(s.target.value)
            key = self.eval(s.target.slice)
            self._guard(s.target, operator.setitem, base, key, op(base[key], self.eval(s.value)))
            return
        self.assign(s.target, op(self.eval(s.target), self.eval(s.value)))

    def stmt_Assert(self, s):
        test = self.eval(s.test)
        if isinstance(test, Tile):
            self.error(s, "assert needs a compile-time condition (a runtime value was given)")
        if not test:
            msg = self.eval(s.msg) if s.msg is not None else "assertion failed"
            self.error(s.test, f"static assertion failed: {msg}")

    def stmt_Return(self, s):
        raise _Return(None if s.value is None else self.eval(s.value))

    def assign(self, target, value) -> None:
        if isinstance(target, ast.Name):
            self.env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, Tile):
                self.error(target, f"cannot unpack a {value.value.type} tile")
            values = list(value)
            if len(values) != len(target.elts):
                self.error(target, f"cannot unpack {len(values)} values into {len(target.elts)} names")
            for t, v in zip(target.elts, values):
                self.assign(t, v)
        elif isinstance(target, ast.Subscript):
            base = self.eval(target.value)
            key = self.eval(target.slice)
            self._guard(target, operator.setitem, base, key, value)
        else:
            self.error(target, f"cannot assign to {type(target).__name__}")

    # ---- loops ------------------------------------------------------------------------------
    def stmt_While(self, s):
        self.error(s, "while loops are not supported in kernels; use tl.range with a bound")

    def stmt_For(self, s):
        if s.orelse:
            self.error(s, "for/else is not supported in kernels")
        it = self.eval(s.iter)
        if isinstance(it, tl.grid):
            return self.grid_loop(s, it)
        if isinstance(it, tl.range):
            return self.range_loop(s, it)
        if isinstance(it, Tile) or isinstance(it, Tensor):
            self.error(s.iter, "cannot iterate over a runtime value; use tl.range(...) for a runtime loop")
        if isinstance(it, builtins.range) or isinstance(it, (tuple, list)):
            for v in it:  # compile-time loop: unrolled
                self.assign(s.target, v)
                self.run(s.body)
            return
        self.error(s.iter, f"kernels loop over tl.grid, tl.range or compile-time sequences, not {type(it).__name__}")

    def _scoped(self, body, bind):
        """Run `body` in a new block with names bound by `bind`; names made inside stay inside."""
        saved = dict(self.env)
        self.b.open_block()
        args = bind()
        self.run(body)
        inner = self.env
        self.env = saved
        return args, inner

    def grid_loop(self, s, g: tl.grid):
        if not g.extents:
            self.error(s.iter, "tl.grid needs at least one extent")
        extents = [sem.index_value(e) for e in g.extents]
        names = s.target.elts if isinstance(s.target, ast.Tuple) else [s.target]
        if len(names) != len(extents):
            self.error(s.target, f"tl.grid has {len(extents)} dims but {len(names)} loop variables")

        def bind():
            pids = tuple(Value(Type(dt.int64)) for _ in extents)
            for n, p in zip(names, pids):
                self.assign(n, Index.atom(p))
            return pids
        pids, _ = self._scoped(s.body, bind)
        block = self.b.close_block(pids)
        self.b.emit(Op.GRID, (), extents, regions=(block,))

    def range_loop(self, s, r: tl.range):
        if not isinstance(r.step, int) or r.step == 0:
            self.error(s.iter, f"tl.range's step must be a nonzero compile-time int, got {r.step!r}")
        start, stop = sem.index_value(r.start), sem.index_value(r.stop)
        carried = sorted(n for n in assigned_names(s.body) if n in self.env and self._is_value(self.env[n]))
        inits = [sem.to_tile(self.env[n]) for n in carried]

        def bind():
            iv = Value(Type(dt.int64))
            self.assign(s.target, Index.atom(iv))
            args = [Value(t.value.type) for t in inits]
            for n, a in zip(carried, args):
                self.env[n] = wrap(a)
            return (iv, *args)
        args, inner = self._scoped(s.body, bind)
        yields = [self._carried_value(s, n, inner[n], t.value.type) for n, t in zip(carried, inits)]
        block = self.b.close_block(args, tuple(yields))
        node = self.b.emit(Op.FOR, [t.value.type for t in inits],
                           (start, stop, sem.const_value(r.step, dt.int64), *(t.value for t in inits)),
                           regions=(block,))
        for n, v in zip(carried, node.results):
            self.env[n] = wrap(v)

    def _carried_value(self, s, name, v, type_: Type) -> Value:
        if not self._is_value(v):
            self.error(s, f"`{name}` is loop-carried but is set to a {type(v).__name__} in the loop body")
        t = sem.to_tile(v, type_.dtype)
        if t.shape != type_.shape:
            self.error(s, f"loop-carried `{name}` changes shape from {type_} to {t.value.type} in the loop body; "
                          "initialise it with its final shape (e.g. tl.zeros)")
        if t.dtype != type_.dtype:
            if t.dtype.is_float and type_.dtype.is_int or type_.dtype == dt.bool_:
                self.error(s, f"loop-carried `{name}` changes dtype from {type_} to {t.value.type}; "
                              "initialise it with the dtype it will have (e.g. 0.0 for a float)")
            t = sem.cast(t, type_.dtype)
        return t.value

    @staticmethod
    def _is_value(v) -> bool:
        """A runtime value or a number (bools included) that a loop or branch can carry."""
        return isinstance(v, (Tile, int, float))

    # ---- branches ---------------------------------------------------------------------------
    def stmt_If(self, s):
        cond = self.eval(s.test)
        if not isinstance(cond, Tile):
            self.run(s.body if cond else s.orelse)
            return
        if cond.shape != ():
            self.error(s.test, f"`if` needs a scalar condition, got a {cond.value.type} tile; use tl.where")
        if cond.dtype != dt.bool_:
            cond = cond != 0
        before = dict(self.env)
        names = sorted(n for n in assigned_names(s.body) | assigned_names(s.orelse)
                       if n in before and self._is_value(before[n]))
        then_vals = self._branch(s.body, names, before)
        else_vals = self._branch(s.orelse, names, before)
        for n, a, b in zip(names, then_vals[1], else_vals[1]):
            if a.type != b.type:
                self.error(s, f"`{n}` is {a.type} after one branch and {b.type} after the other")
        node = self.b.emit(Op.IF, [v.type for v in then_vals[1]], (cond.value,), regions=(then_vals[0], else_vals[0]))
        self.env = before
        for n, v in zip(names, node.results):
            self.env[n] = wrap(v)

    def _branch(self, body, names, before):
        self.env = dict(before)
        self.b.open_block()
        self.run(body)
        ys = [sem.to_tile(self.env[n], before[n].dtype if isinstance(before[n], Tile) else None).value for n in names]
        return self.b.close_block((), tuple(ys)), ys

    # ---- expressions ------------------------------------------------------------------------
    def eval(self, e):
        return self._guard(e, self.expr, e)

    def expr(self, e):
        method = getattr(self, "expr_" + type(e).__name__, None)
        if method is None:
            self.error(e, f"unsupported expression in a kernel: {type(e).__name__}")
        return method(e)

    def expr_Constant(self, e):
        return e.value

    def expr_Name(self, e):
        if e.id in self.env:
            return self.env[e.id]
        if e.id in self.src.names:
            return self.src.names[e.id]
        if hasattr(builtins, e.id):
            return getattr(builtins, e.id)
        self.error(e, f"name `{e.id}` is not defined")

    def expr_Attribute(self, e):
        return getattr(self.eval(e.value), e.attr)

    def expr_Tuple(self, e):
        return tuple(self.eval(x) for x in e.elts)

    def expr_List(self, e):
        return [self.eval(x) for x in e.elts]

    def expr_Slice(self, e):
        return slice(*(None if x is None else self.eval(x) for x in (e.lower, e.upper, e.step)))

    def expr_Subscript(self, e):
        return self.eval(e.value)[self.eval(e.slice)]

    def expr_BinOp(self, e):
        return _BINOPS[type(e.op)](self.eval(e.left), self.eval(e.right))

    def expr_UnaryOp(self, e):
        v = self.eval(e.operand)
        if isinstance(e.op, ast.Not) and isinstance(v, Tile):
            return ~v
        return _UNARY[type(e.op)](v)

    def expr_Compare(self, e):
        left, result = self.eval(e.left), None
        for op, rhs in zip(e.ops, e.comparators):
            right = self.eval(rhs)
            r = _CMPOPS[type(op)](left, right)
            result = r if result is None else result & r
            left = right
        return result

    def expr_BoolOp(self, e):
        values = [self.eval(v) for v in e.values]
        if any(isinstance(v, Tile) for v in values):
            acc = values[0]
            for v in values[1:]:
                acc = (acc & v) if isinstance(e.op, ast.And) else (acc | v)
            return acc
        return all(values) if isinstance(e.op, ast.And) else any(values)

    def expr_IfExp(self, e):
        cond = self.eval(e.test)
        if isinstance(cond, Tile):
            return tl.where(cond, self.eval(e.body), self.eval(e.orelse))
        return self.eval(e.body) if cond else self.eval(e.orelse)

    def expr_Call(self, e):
        fn = self.eval(e.func)
        if fn is tl.load and e.args and isinstance(e.args[0], ast.Subscript):
            t = self.eval(e.args[0].value)
            if isinstance(t, Tensor):
                kw = {k.arg: self.eval(k.value) for k in e.keywords}
                return sem.load(t, self.eval(e.args[0].slice), **kw)
        args = []
        for a in e.args:
            if isinstance(a, ast.Starred):
                args.extend(self.eval(a.value))
            else:
                args.append(self.eval(a))
        kwargs = {k.arg: self.eval(k.value) for k in e.keywords if k.arg is not None}
        inline = getattr(fn, "__tl_inline__", None)
        if inline is not None:
            return inline(self.b, args, kwargs)
        if fn in (builtins.print, builtins.input, builtins.open, builtins.exec, builtins.eval):
            self.error(e, f"{fn.__name__}() cannot be called inside a kernel")
        return fn(*args, **kwargs)


def inline_call(src: Source, b: Builder, args: list, kwargs: dict):
    """Trace a @tl.jit helper's body in the caller's kernel; its `return` value is the call's value."""
    sig = inspect.signature(src.fn)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise CompileError(f"calling {src.fn.__name__}: {e}") from None
    bound.apply_defaults()
    w = Walker(src, b, dict(bound.arguments))
    for i, s in enumerate(src.tree.body):
        if isinstance(s, ast.Return) and i != len(src.tree.body) - 1:
            w.error(s, "return must be the last statement of a kernel helper")
    try:
        w.run(src.tree.body)
    except _Return as r:
        return r.value
    return None


def trace(src: Source, params: tuple[Param, ...], constexprs: dict) -> Kernel:
    """Build the tile IR of a kernel for one specialization (param kinds/dtypes + constexpr values)."""
    b = Builder()
    token = sem.CURRENT.set(b)
    try:
        b.loc = src.loc(src.tree)
        env: dict = dict(constexprs)
        for i, p in enumerate(params):
            if p.kind == "array":
                shape = tuple(Index.atom(b.value(Op.SHAPE, Type(dt.int64), arg=(i, d))) for d in range(p.ndim))
                env[p.name] = Tensor(i, p, shape)
            else:
                env[p.name] = wrap(b.value(Op.ARG, Type(p.dtype), arg=i))
        w = Walker(src, b, env)
        try:
            w.run(src.tree.body)
        except _Return as r:
            if r.value is not None:
                raise KernelError("kernels write their results into arrays; they cannot return a value",
                                  src.loc(src.tree)) from None
        return Kernel(src.fn.__name__, params, b.close_block(()), src.loc(src.tree))
    finally:
        sem.CURRENT.reset(token)
