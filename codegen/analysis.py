"""Counts of one traced specialization on concrete arguments: the input of the accelerator model.

    analyze(kernel, args) -> KernelCounts              # what `autotune.pricing.price` takes
    analyze_detailed(kernel, args) -> Analysis         # the counts plus notes and tallies

`args` are the runtime values in parameter order (NumPy arrays and Python scalars, exactly what the
kernel is called with). Only scalar (shape ()) values are evaluated: SHAPE, ARG, CONST, scalar arithmetic
and comparisons, scalar loads (read from the arrays), IF on scalars, FOR trip counts and GRID extents, so
trip counts, grid sizes and edge masks are exact for these shapes. Tiles are never computed: a tile op is
counted from its static shape.

Evaluation is SIMT over the tile programs: every scalar is a NumPy vector with one lane per grid program
(the program ids are lanes, loops run to the longest trip count with an active mask, IF runs both sides
under complementary masks), so a grid of 10^4 programs costs about as much Python as one program. When a
grid has more than `max_programs` programs a uniform, deterministic sample of them is evaluated and every
count scaled by programs / sample (`Analysis.sampled` < 1 says so); a FOR loop longer than `max_trips`
iterations without loop-carried scalars is likewise sampled (`Analysis.notes` says which). Unique
off-chip bytes need every tile seen, so under sampling an array's unique bytes become min(bytes
accessed, the array's size).

What is counted (documented constants below):

FLOPs, per (engine, dtype name):
- DOT: 2*M*N*K on "matrix" with the operand dtype, for the whole tile shape: the masked padding of a
  ragged edge tile counts (the micro-kernel computes on the filled zeros). The accumulation into `acc`
  is part of the multiply-add.
- elementwise tile ops (arithmetic, comparisons, where, casts): 1 FLOP per element on "vector" with the
  operand dtype; EXP/EXP2/LOG count `TRANSCENDENTAL_FLOPS` (10) per element and SQRT/RSQRT
  `ROOT_FLOPS` (4); REDUCE counts 1 FLOP per input element. BROADCAST, RESHAPE, TRANSPOSE, INTERLEAVE,
  ARANGE and CONST move data and count none.
- floating-point scalar ops count 1 on "scalar"; integer scalar ops (index arithmetic) count none.

Bytes, per level role:
- "offchip": the unique bytes each array has read from it (LOAD) plus the unique bytes written to it
  (STORE): only the in-bounds part of each tile (masked-out lanes move nothing), computed exactly from
  the concrete starts, extents and array shapes; tiles are de-duplicated by (array, extents, starts), so
  an operand tile re-read by many programs (a matmul's A row panel) counts once. This assumes the
  kernel's arrays stay in the caches between their first and later touches (true on the development
  machine's 480 MiB L3 for anything that is not huge); when a grid is sampled, each array's unique
  bytes are taken as min(bytes accessed, the array's size).
- "onchip": all other in-bounds LOAD/STORE bytes: the re-reads (and re-writes) of tiles already
  touched, served by the caches / SBUF.
- "local": bytes streamed through the dot micro-kernels, per DOT executed: packing reads each operand
  tile and writes its packed panel (2 x (M*K + K*N) x itemsize; a B given as panels is not packed), the
  micro-kernel re-reads packed A once per NR-column panel and packed B once per MR-row block
  (`micro=(MR, NR)`, default `MICRO`), and the float32 accumulator block is read and written once per
  dot (2 x M*N*4; written only without `acc`). The model is the BLIS/oneDNN scheme, independent of which
  micro-kernel the target actually runs.
  Elementwise tile traffic through L1 is not counted.

Footprints, per tile program (the body of the GRID, nested regions included; the largest over grids):
- "onchip": the sum of the bytes of every tile value the program materializes (each SSA value once,
  loop iterations reuse their buffers). An upper bound: fused elementwise chains never materialize.
- "local": the bytes of the dot results / accumulators (what lives in PSUM, the AMX tile registers or
  the FMA register block, spilled to L1); without a DOT the largest single tile.

`programs` is the number of grid programs (summed over the kernel's GRIDs, 1 without a grid);
`dot_shapes` the distinct (M, N, K) of the DOT ops executed, in first-execution order.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from codegen import dtypes as dt
from codegen.counts import KernelCounts
from codegen.interpret import _binary, _unary, cast
from codegen.ir import COMPARE, ELEMENTWISE, Block, Kernel, Node, Op, Value, dot_panels, walk

TRANSCENDENTAL_FLOPS = 10  # EXP, EXP2, LOG: a range reduction plus a ~degree-6 polynomial per element
ROOT_FLOPS = 4  # SQRT, RSQRT: one hardware square root / reciprocal estimate plus a Newton step
MICRO = (16, 32)  # nominal (MR, NR) register block of a dot micro-kernel, for "local" streaming bytes:
# between the AVX-512 FMA block (8 x 48) and the AMX 2x2 accumulator tiles (32 x 32); not target-specific
MAX_PROGRAMS = 1 << 16  # evaluate at most this many grid programs (a uniform sample beyond)
STEP_BUDGET = 1 << 24  # node evaluations x programs before a grid is sampled (~0.2 s of NumPy)
PROBE_PROGRAMS = 64  # programs evaluated to measure a big grid's steps per program
MAX_TRIPS = 4096  # sample a longer FOR loop (when it carries no scalars) to this many iterations

_UNKNOWN = object()  # a scalar that depends on tile data (a reduction result, ...): not evaluated
_TILE = object()  # a tile value (never evaluated)
_FLOP_OPS = ELEMENTWISE | {Op.REDUCE}


@dataclass(frozen=True)
class Analysis:
    counts: KernelCounts
    sampled: float = 1.0  # fraction of the grid programs evaluated (1.0: every program, exact)
    notes: tuple[str, ...] = ()  # approximations made (sampling, data-dependent control flow)
    dot_calls: float = 0.0  # DOT ops executed over the whole kernel
    tile_ops: float = 0.0  # tile-level ops executed (loads, stores, elementwise, dots, reductions)
    accessed: float = 0.0  # in-bounds LOAD + STORE bytes, before de-duplication


def analyze(kernel: Kernel, args: list, *, micro: tuple[int, int] = MICRO) -> KernelCounts:
    """The counts of `kernel` run on `args` (see the module docstring for what is counted)."""
    return analyze_detailed(kernel, args, micro=micro).counts


def analyze_detailed(kernel: Kernel, args: list, *, micro: tuple[int, int] = MICRO,
                     max_programs: int = MAX_PROGRAMS, max_trips: int = MAX_TRIPS) -> Analysis:
    if len(args) != len(kernel.params):
        raise ValueError(f"analyze {kernel.name}: {len(kernel.params)} parameters, {len(args)} arguments")
    ev = _Evaluator(kernel, [np.asarray(a) if p.kind == "array" else a for p, a in zip(kernel.params, args)],
                    micro, max_programs, max_trips)
    ev.run_kernel()
    return ev.result()


def _inbounds(shape: tuple[int, ...], kept: tuple[bool, ...], extents: tuple[int, ...], starts: list):
    """Elements of a tile access that fall inside the array, per lane (a NumPy int64 vector or scalar)."""
    count = np.int64(1)
    ext = iter(extents)
    for d, k in enumerate(kept):
        s, size = starts[d], shape[d]
        if k:
            e = next(ext)
            count = count * np.maximum(np.minimum(s + e, size) - np.maximum(s, 0), 0)
        else:
            count = count * ((s >= 0) & (s < size))
    return count


class _Evaluator:
    def __init__(self, kernel: Kernel, args: list, micro, max_programs: int, max_trips: int,
                 probe: bool = True):
        self.kernel, self.args, self.micro, self.probe = kernel, args, micro, probe
        self.steps = 0  # node evaluations x lanes: the cost of the evaluation so far
        self.max_programs, self.max_trips = max_programs, max_trips
        self.env: dict[Value, object] = {}
        self.flops: dict[tuple[str, str], float] = defaultdict(float)
        self.local = 0.0
        self.accessed = 0.0
        self.dot_calls = self.tile_ops = 0.0
        self.dot_shapes: dict[tuple[int, int, int], None] = {}
        # (param, kept, extents, is_store) -> arrays of the distinct tiles' keys (see _log)
        self.log: dict[tuple, list] = defaultdict(list)
        self.moved: dict[tuple[int, bool], float] = defaultdict(float)  # (param, store) -> bytes accessed
        self._undeduped: set[tuple[int, bool]] = set()
        self.sampled_loops = 0  # depth of FOR loops being evaluated on a sample of their iterations
        self.unknown_access: dict[tuple[int, bool], float] = defaultdict(float)
        self.programs = 0
        self.sampled = 1.0
        self.notes: list[str] = []
        self.footprint = {"onchip": 0, "local": 0}
        # lane state: number of lanes, active mask, per-lane weight
        self.L = 1
        self._mask = np.ones(1, bool)
        self._weight = np.ones(1)
        self._aw: float | None = None
        self._wm: np.ndarray | None = None

    # ---------------------------------------------------------------- driver
    def run_kernel(self) -> None:
        grids = [n for n in walk(self.kernel.body) if n.op == Op.GRID]
        self._footprints(self.kernel.body if not grids else None, grids)
        self.block(self.kernel.body, ())
        if not grids:
            self.programs = 1

    def result(self) -> Analysis:
        offchip = 0.0
        for (param, store), total in self.moved.items():
            if self.sampled < 1.0 or (param, store) in self._undeduped:
                unique = total
            else:
                unique = self._unique_bytes(param, store) + self.unknown_access[(param, store)]
            offchip += min(unique, total, float(self.args[param].nbytes))
        onchip = max(self.accessed - offchip, 0.0)
        counts = KernelCounts(
            flops={k: v for k, v in self.flops.items() if v > 0},
            bytes={"offchip": offchip, "onchip": onchip, "local": self.local},
            footprint=dict(self.footprint), programs=max(1, int(self.programs)),
            dot_shapes=tuple(self.dot_shapes))
        return Analysis(counts=counts, sampled=self.sampled, notes=tuple(dict.fromkeys(self.notes)),
                        dot_calls=self.dot_calls, tile_ops=self.tile_ops, accessed=self.accessed)

    def _unique_bytes(self, param: int, store: bool) -> float:
        """In-bounds bytes of the distinct tiles read from (or written to) array `param`."""
        arr = self.args[param]
        total = 0.0
        for (p, kept, extents, st), entries in self.log.items():
            if p != param or st != store:
                continue
            keys = np.unique(np.concatenate(entries))
            starts: list = [None] * len(kept)
            ext = list(extents)
            es = [ext.pop(0) if k else 1 for k in kept]
            for d in reversed(range(len(kept))):
                r = arr.shape[d] + es[d] + 1
                starts[d] = keys % r - es[d]
                keys = keys // r
            total += float(np.sum(_inbounds(arr.shape, kept, extents, starts))) * arr.itemsize
        return total

    def _footprints(self, body: Block | None, grids: list[Node]) -> None:
        for block in ([body] if body is not None else [g.regions[0] for g in grids]):
            onchip = local = biggest = 0
            for n in walk(block):
                if n.op in (Op.FOR, Op.IF, Op.GRID, Op.STORE):
                    continue
                for r in n.results:
                    if r.shape:
                        b = r.type.numel * r.dtype.itemsize
                        onchip += b
                        biggest = max(biggest, b)
                        if n.op == Op.DOT:
                            local += b
            self.footprint["onchip"] = max(self.footprint["onchip"], onchip)
            self.footprint["local"] = max(self.footprint["local"], local or biggest)

    # ---------------------------------------------------------------- lanes
    @property
    def mask(self) -> np.ndarray:
        return self._mask

    @mask.setter
    def mask(self, m: np.ndarray) -> None:
        self._mask, self._aw, self._wm = m, None, None

    @property
    def weight(self) -> np.ndarray:
        return self._weight

    @weight.setter
    def weight(self, w: np.ndarray) -> None:
        self._weight, self._aw, self._wm = w, None, None

    def masked_weight(self) -> np.ndarray:
        """Per-lane weight, zero on inactive lanes."""
        if self._wm is None:
            self._wm = np.where(self._mask, self._weight, 0.0)
        return self._wm

    def active_weight(self) -> float:
        if self._aw is None:
            self._aw = float(self.masked_weight().sum())
        return self._aw

    def lanes(self, x):
        """A scalar value as a per-lane vector."""
        return np.broadcast_to(np.asarray(x), (self.L,))

    # ---------------------------------------------------------------- blocks and nodes
    def block(self, block: Block, bindings) -> list:
        for v, x in zip(block.args, bindings):
            self.env[v] = x
        for n in block.nodes:
            self.node(n)
        return [self.env.get(v, _UNKNOWN) for v in block.yields]

    def value(self, v: Value):
        return self.env.get(v, _UNKNOWN if not v.shape else _TILE)

    def node(self, n: Node) -> None:
        op = n.op
        self.steps += self.L
        if op == Op.FOR:
            return self.loop(n)
        if op == Op.IF:
            return self.branch(n)
        if op == Op.GRID:
            return self.grid(n)
        if op in (Op.LOAD, Op.STORE):
            return self.access(n)
        out = n.results[0]
        if out.shape or any(s.shape for s in n.srcs):
            self.tile_op(n)
            self.env[out] = _TILE if out.shape else _UNKNOWN
            return
        self.env[out] = self.scalar(n)

    def scalar(self, n: Node):
        """Evaluate a scalar node over the lanes (or _UNKNOWN when an operand is unknown)."""
        out = n.results[0].type
        op = n.op
        if op == Op.ARG:
            return np.asarray(self.args[n.arg]).astype(out.dtype.np)
        if op == Op.SHAPE:
            return np.asarray(self.args[n.arg[0]].shape[n.arg[1]], np.int64)
        if op == Op.CONST:
            with np.errstate(over="ignore", invalid="ignore"):
                if out.dtype.is_float:
                    return cast(np.asarray(n.arg, np.float64), dt.float32, out.dtype)
                return np.asarray(n.arg).astype(out.dtype.np)
        get = [self.value(s) for s in n.srcs]
        if any(g is _UNKNOWN or g is _TILE for g in get):
            return _UNKNOWN
        if out.dtype.is_float and op in _FLOP_OPS:
            self.flops[("scalar", out.dtype.name)] += self.active_weight()
        if op == Op.WHERE:
            return np.where(get[0], get[1], get[2]).astype(out.dtype.np)
        if op == Op.CAST:
            return cast(get[0], n.srcs[0].dtype, out.dtype, n.arg)
        if op in (Op.BROADCAST, Op.RESHAPE, Op.TRANSPOSE, Op.REDUCE):
            return get[0]
        if op in (Op.NEG, Op.ABS, Op.NOT, Op.EXP, Op.EXP2, Op.LOG, Op.SQRT, Op.RSQRT):
            return _unary(op, get[0], out.dtype)
        if len(get) == 2:
            return _binary(op, get[0], get[1], n.srcs[0].dtype)
        return _UNKNOWN

    def tile_op(self, n: Node) -> None:
        w = self.active_weight()
        if w <= 0:
            return
        op, out = n.op, n.results[0]
        if op in (Op.BROADCAST, Op.RESHAPE, Op.TRANSPOSE, Op.INTERLEAVE, Op.ARANGE, Op.CONST):
            return
        self.tile_ops += w
        if op == Op.DOT:
            a, b = n.srcs[0], n.srcs[1]
            a_panels, b_panels = dot_panels(n)
            m, k = (out.shape[-2], a.shape[1]) if a_panels else (a.shape[-2], a.shape[-1])
            nn = out.shape[-1]
            batch = math.prod(a.shape[:-2]) if len(a.shape) > 2 and not a_panels else 1
            self.dot_shapes.setdefault((m, nn, k), None)
            self.flops[("matrix", a.dtype.name)] += w * 2.0 * batch * m * nn * k
            self.dot_calls += w * batch
            mr, nr = self.micro
            # ("panels" operands are read in place, not packed)
            pack = 2 * ((0 if a_panels else m * k * a.dtype.itemsize) + (0 if b_panels else k * nn * b.dtype.itemsize))
            stream = a.dtype.itemsize * (m * k * math.ceil(nn / nr)) + b.dtype.itemsize * (k * nn * math.ceil(m / mr))
            acc = m * nn * out.dtype.itemsize * (2 if len(n.srcs) == 3 else 1)
            self.local += w * batch * (pack + stream + acc)
            return
        if op == Op.REDUCE:
            self.flops[("vector", n.srcs[0].dtype.name)] += w * n.srcs[0].type.numel
            return
        if op in ELEMENTWISE:
            if op in (Op.EXP, Op.EXP2, Op.LOG):
                per = TRANSCENDENTAL_FLOPS
            elif op in (Op.SQRT, Op.RSQRT):
                per = ROOT_FLOPS
            else:
                per = 1
            src = n.srcs[-1] if op == Op.WHERE else n.srcs[0] if op in COMPARE or op == Op.CAST else out
            self.flops[("vector", src.dtype.name)] += w * per * out.type.numel

    # ---------------------------------------------------------------- memory
    def access(self, n: Node) -> None:
        store = n.op == Op.STORE
        acc = n.arg
        starts_v = n.srcs[1:] if store else n.srcs
        tile = n.srcs[0] if store else n.results[0]
        arr = self.args[acc.param]
        starts = [self.value(s) for s in starts_v]
        w = self.active_weight()
        if w > 0:
            self.tile_ops += w if tile.shape else 0
        if any(s is _UNKNOWN or s is _TILE for s in starts):
            nbytes = w * tile.type.numel * arr.itemsize
            self.accessed += nbytes
            self.moved[(acc.param, store)] += nbytes
            self.unknown_access[(acc.param, store)] += nbytes
            self.notes.append(f"{_where(n)}: a {'store' if store else 'load'} at data-dependent starts: "
                              "counted whole and unique")
            if not store:
                self.env[n.results[0]] = _TILE if tile.shape else _UNKNOWN
            return
        starts = [np.asarray(s, np.int64) for s in starts]
        count = _inbounds(arr.shape, acc.kept, acc.extents, starts)
        if w > 0:
            wm = self.masked_weight()
            nbytes = float((wm * self.lanes(count)).sum()) * arr.itemsize  # (np.dot: BLAS, slow here)
            self.accessed += nbytes
            self.moved[(acc.param, store)] += nbytes
            self._log(acc, store, arr.shape, starts)
        if not store:
            if tile.shape:
                self.env[n.results[0]] = _TILE
            else:  # a scalar load: read it (fill where out of bounds)
                self.env[n.results[0]] = self._scalar_load(arr, starts, count, acc.fill, tile.dtype)

    def _log(self, acc, store: bool, shape: tuple[int, ...], starts: list) -> None:
        """Remember which tiles this access touched (de-duplicated), for the unique offchip bytes.

        Starts are clamped to [-extent, size] (an access entirely outside stays entirely outside) and
        encoded as one int64 per tile in mixed radix; without starts (a 0-d array) the key is 0. An
        access inside a sampled loop saw only some of its tiles: its array's unique bytes are then
        taken as min(bytes accessed, array size)."""
        if self.sampled_loops:
            self._undeduped.add((acc.param, store))
            return
        radix, cols = [], []
        ext = iter(acc.extents)
        for d, kept in enumerate(acc.kept):
            e = next(ext) if kept else 1
            cols.append(np.clip(starts[d], -e, shape[d]) + e)
            radix.append(shape[d] + e + 1)
        if math.prod(radix) >= 1 << 62:
            self.notes.append("an array too large to de-duplicate tiles exactly: its bytes are counted "
                              "as min(accessed, array size)")
            self._undeduped.add((acc.param, store))
            return
        key = np.zeros((), np.int64)
        for c, r in zip(cols, radix):
            key = key * r + c
        key = self.lanes(key)
        if not self.mask.all():
            key = key[self.mask]
        self.log[(acc.param, acc.kept, acc.extents, store)].append(np.unique(key))

    def _scalar_load(self, arr: np.ndarray, starts, inb, fill, d: dt.DType):
        idx = tuple(np.clip(self.lanes(s), 0, max(size - 1, 0)) for s, size in zip(starts, arr.shape))
        if arr.size == 0:
            return np.full(self.L, fill).astype(d.np)
        vals = arr[idx]
        fillv = cast(np.asarray(fill, np.float64), dt.float32, d) if d.is_float else np.asarray(fill).astype(d.np)
        return np.where(self.lanes(inb) > 0, vals.astype(d.np), fillv)

    # ---------------------------------------------------------------- control flow
    def loop(self, n: Node) -> None:
        start, stop, step, *init = (self.value(s) for s in n.srcs)
        body = n.regions[0]
        if any(x is _UNKNOWN for x in (start, stop, step)):
            self.notes.append(f"{_where(n)}: a loop with a data-dependent trip count: counted as 1 iteration")
            start, stop, step = np.int64(0), np.int64(1), np.int64(1)
        start, stop, step = (np.asarray(x, np.int64) for x in (start, stop, step))
        safe = np.where(step == 0, 1, step)
        trips = np.where(step == 0, 0, np.maximum(-(-(stop - start) // safe), 0))
        trips_active = self.lanes(trips)[self.mask]
        max_trip = int(trips_active.max()) if trips_active.size else 0
        carried = list(init)
        scalar_carried = any(not v.shape for v in n.results)
        iters = range(max_trip)
        scale = 1.0
        if max_trip > self.max_trips and not scalar_carried:
            sample = self.max_trips
            iters = [(i * max_trip) // sample for i in range(sample)]
            scale = max_trip / sample
            self.notes.append(f"{_where(n)}: {max_trip} iterations sampled uniformly ({sample} evaluated)")
        outer_mask, outer_weight = self.mask, self.weight
        self.weight = outer_weight * scale
        self.sampled_loops += scale != 1.0
        for i in iters:
            active = outer_mask & self.lanes(i < trips)
            if not active.any():
                continue
            self.mask = active
            iv = start + i * step
            new = self.block(body, [iv, *carried])
            carried = [_merge(active, nv, ov, self) for nv, ov in zip(new, carried)]
        self.mask, self.weight = outer_mask, outer_weight
        self.sampled_loops -= scale != 1.0
        for v, c in zip(n.results, carried):
            self.env[v] = c if not v.shape else _TILE

    def branch(self, n: Node) -> None:
        cond = self.value(n.srcs[0])
        then, other = n.regions
        outer_mask, outer_weight = self.mask, self.weight
        if cond is _UNKNOWN:
            self.notes.append(f"{_where(n)}: a branch on data: each side counted at half weight")
            self.weight = outer_weight * 0.5
            self.block(then, ())
            self.block(other, ())
            self.weight = outer_weight
            for v in n.results:
                self.env[v] = _TILE if v.shape else _UNKNOWN
            return
        c = self.lanes(np.asarray(cond).astype(bool))
        ys_t = ys_e = None
        if (outer_mask & c).any():
            self.mask = outer_mask & c
            ys_t = self.block(then, ())
        if (outer_mask & ~c).any():
            self.mask = outer_mask & ~c
            ys_e = self.block(other, ())
        self.mask = outer_mask
        for i, v in enumerate(n.results):
            if v.shape:
                self.env[v] = _TILE
                continue
            t = ys_t[i] if ys_t is not None else _UNKNOWN
            e = ys_e[i] if ys_e is not None else _UNKNOWN
            if ys_t is None:
                self.env[v] = e
            elif ys_e is None:
                self.env[v] = t
            elif t is _UNKNOWN or e is _UNKNOWN:
                self.env[v] = _UNKNOWN
            else:
                self.env[v] = np.where(c, t, e)

    def _affordable(self, n: Node, total: int) -> int:
        """How many programs of this grid to evaluate: all of them unless their scalar steps (nodes x
        iterations, measured on a uniform probe of PROBE_PROGRAMS programs) exceed STEP_BUDGET."""
        limit = min(total, self.max_programs)
        if not self.probe or total <= PROBE_PROGRAMS:
            return limit
        sub = _Evaluator(self.kernel, self.args, self.micro, PROBE_PROGRAMS, self.max_trips, probe=False)
        sub.env = dict(self.env)
        sub.grid(n)
        per_program = max(sub.steps / PROBE_PROGRAMS, 1.0)
        return max(PROBE_PROGRAMS, min(limit, int(STEP_BUDGET / per_program)))

    def grid(self, n: Node) -> None:
        ext = [self.value(s) for s in n.srcs]
        if any(e is _UNKNOWN for e in ext):
            self.notes.append(f"{_where(n)}: a grid with data-dependent extents: counted as 1 program")
            ext = [np.int64(1)] * len(ext)
        ext = [np.maximum(np.asarray(e, np.int64), 0) for e in ext]
        body = n.regions[0]
        if self.L == 1 and all(e.ndim == 0 for e in ext):
            # the usual case: a top-level grid; lanes = programs (a uniform sample when too many)
            shape = [int(e) for e in ext]
            total = math.prod(shape)
            self.programs += total
            if total == 0 or not self.mask[0]:
                return
            limit = self._affordable(n, total)
            if total > limit:
                lin = (np.arange(limit, dtype=np.int64) * total) // limit
                scale = total / limit
                self.sampled = min(self.sampled, limit / total)
                self.notes.append(f"{_where(n)}: {total} programs sampled uniformly "
                                  f"({limit} evaluated, counts scaled by {scale:.4g})")
            else:
                lin = np.arange(total, dtype=np.int64)
                scale = 1.0
            pids = np.unravel_index(lin, shape) if shape else ()
            outer = (self.L, self.mask, self.weight, dict(self.env))
            self.L = lin.size
            self.mask = np.ones(self.L, bool)
            self.weight = np.full(self.L, float(self.weight[0]) * scale)
            self.block(body, [p.astype(np.int64) for p in pids])
            self.L, self.mask, self.weight, self.env = outer
            return
        # a grid inside a per-lane context (nested): expand every lane into its programs
        ext_l = [self.lanes(e) for e in ext]
        per_lane = np.prod(np.stack(ext_l), axis=0) if ext_l else np.ones(self.L, np.int64)
        per_lane = np.where(self.mask, per_lane, 0)
        self.programs += int(round(float((per_lane * self.weight).sum())))
        parent = np.repeat(np.arange(self.L), per_lane)
        if parent.size == 0:
            return
        offsets = np.arange(parent.size) - np.repeat(np.cumsum(per_lane) - per_lane, per_lane)
        pids = []
        rem = offsets
        for e in reversed(ext_l):
            e_p = e[parent]
            pids.append(rem % e_p)
            rem = rem // e_p
        pids.reverse()
        outer = (self.L, self.mask, self.weight, dict(self.env))
        self.env = {v: (x[parent] if isinstance(x, np.ndarray) and x.ndim == 1 else x)
                    for v, x in self.env.items()}
        self.L, self.mask, self.weight = parent.size, np.ones(parent.size, bool), self.weight[parent]
        self.block(body, pids)
        self.L, self.mask, self.weight, self.env = outer


def _merge(active: np.ndarray, new, old, ev: _Evaluator):
    """A loop-carried value after one iteration: the new value on active lanes, the old elsewhere."""
    if new is _TILE or old is _TILE:
        return _TILE
    if new is _UNKNOWN or old is _UNKNOWN:
        return _UNKNOWN
    return np.where(active, ev.lanes(new), ev.lanes(old))


def _where(n: Node) -> str:
    return str(n.loc) if n.loc is not None else n.op.name.lower()
