"""What a compiled kernel does, counted: the input of the accelerator model's pricing.

codegen's analysis fills a `KernelCounts` from a specialization's tile IR and the chosen tiling;
autotune's model prices it on a target. Memory levels are named by role so one count prices on any
machine: "offchip" (DRAM / HBM), "onchip" (L2 / SBUF), "local" (L1 + registers / PSUM).
"""
from __future__ import annotations

from dataclasses import dataclass, field

ENGINES = ("matrix", "vector", "scalar")
LEVELS = ("offchip", "onchip", "local")


@dataclass(frozen=True)
class KernelCounts:
    flops: dict[tuple[str, str], float] = field(default_factory=dict)  # (engine, dtype name) -> FLOPs
    bytes: dict[str, float] = field(default_factory=dict)  # level role -> bytes moved through it
    footprint: dict[str, int] = field(default_factory=dict)  # level role -> peak bytes resident per tile program
    programs: int = 1  # independent tile programs (grid size), spread over cores / NeuronCores
    dot_shapes: tuple[tuple[int, int, int], ...] = ()  # (M, N, K) of each tile-level dot, for partition limits

    @property
    def total_flops(self) -> float:
        return float(sum(self.flops.values()))
