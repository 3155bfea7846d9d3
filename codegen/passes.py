"""IR -> IR passes. Each rebuilds the blocks it changes; nodes are immutable."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

from codegen.ir import BINARY, COMPARE, UNARY, Block, Kernel, Node, Op, walk


def use_counts(block: Block) -> Counter:
    uses: Counter = Counter()
    for n in walk(block):
        uses.update(n.srcs)
        for r in n.regions:
            uses.update(r.yields)
    uses.update(block.yields)
    return uses


def _map_blocks(block: Block, fn) -> Block:
    nodes = tuple(replace(n, regions=tuple(_map_blocks(r, fn) for r in n.regions)) if n.regions else n
                  for n in block.nodes)
    return fn(replace(block, nodes=nodes))


def fuse_dot_accumulate(kernel: Kernel) -> Kernel:
    """acc + dot(a, b) -> dot(a, b, acc) when the product has no other use: the micro-kernel then
    accumulates in place instead of materializing the product."""
    uses = use_counts(kernel.body)

    def rewrite(block: Block) -> Block:
        producers = {n.result: n for n in block.nodes if n.op == Op.DOT and len(n.srcs) == 2}
        fused: dict[Node, Node] = {}  # the ADD node -> the fused DOT that replaces it
        dead: set[Node] = set()  # the DOT nodes folded into an ADD
        for n in block.nodes:
            if n.op != Op.ADD:
                continue
            for d, acc in ((n.srcs[1], n.srcs[0]), (n.srcs[0], n.srcs[1])):
                dot = producers.get(d)
                if dot is not None and dot not in dead and uses[d] == 1 and d.type == n.result.type:
                    fused[n] = Node(Op.DOT, n.results, (*dot.srcs, acc), dot.arg, (), dot.loc)
                    dead.add(dot)
                    break
        if not fused:
            return block
        return replace(block, nodes=tuple(fused.get(n, n) for n in block.nodes if n not in dead))

    return replace(kernel, body=_map_blocks(kernel.body, rewrite))


_SCALAR_OPS = BINARY | COMPARE | UNARY | {Op.CONST, Op.ARG, Op.SHAPE, Op.CAST}


def hoist_store_indices(kernel: Kernel) -> Kernel:
    """Move the scalar index arithmetic of a STORE of a FOR's result (or of a CAST of it) to before that FOR, so
    the loop's lowering knows where its result goes (codegen.lower writes a k loop's last DOT straight to the
    array)."""
    def rewrite(block: Block) -> Block:
        nodes = list(block.nodes)
        loops = {r: m for m in block.nodes if m.op == Op.FOR for r in m.results}
        loops.update({m.result: loops[m.srcs[0]] for m in block.nodes if m.op == Op.CAST and m.srcs[0] in loops})
        for st in block.nodes:
            loop = loops.get(st.srcs[0]) if st.op == Op.STORE else None
            if loop is not None:
                moved = _scalar_slice(nodes[nodes.index(loop) + 1:nodes.index(st)], st.srcs[1:], loop)
                rest = [m for m in nodes if m not in moved]
                at = rest.index(loop)
                nodes = rest[:at] + moved + rest[at:]
        return block if nodes == list(block.nodes) else replace(block, nodes=tuple(nodes))

    return replace(kernel, body=_map_blocks(kernel.body, rewrite))


def _scalar_slice(between: list[Node], values, loop: Node) -> list[Node]:
    """The nodes of `between` that compute `values`, in program order, if all are pure scalar arithmetic
    independent of `loop`'s results; else none."""
    made = {r: m for m in between for r in m.results}
    found: set[Node] = set()
    todo = list(values)
    while todo:
        m = made.get(todo.pop())
        if m is None or m in found:
            continue
        if m.op not in _SCALAR_OPS or m.result.shape or any(v in loop.results for v in m.srcs):
            return []
        found.add(m)
        todo.extend(m.srcs)
    return [m for m in between if m in found]


_EFFECTS = frozenset({Op.STORE, Op.GRID})


def _has_effects(n: Node) -> bool:
    return n.op in _EFFECTS or any(_has_effects(m) for r in n.regions for m in r.nodes)


def dead_code(kernel: Kernel) -> Kernel:
    """Remove nodes without side effects whose results are unused, until nothing changes."""
    while True:
        uses = use_counts(kernel.body)

        def rewrite(block: Block) -> Block:
            keep = tuple(n for n in block.nodes if _has_effects(n) or any(uses[r] for r in n.results))
            return block if len(keep) == len(block.nodes) else replace(block, nodes=keep)
        new = replace(kernel, body=_map_blocks(kernel.body, rewrite))
        if new == kernel:
            return kernel
        kernel = new
