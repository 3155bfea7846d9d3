"""IR -> IR passes. Each rebuilds the blocks it changes; nodes are immutable."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

from codegen.ir import Block, Kernel, Node, Op, walk


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
