"""One row per (op, shape, dtype, threads) measurement, and how suites print them."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.table import Table


@dataclass
class Row:
    op: str
    shape: str
    dtype: str
    threads: int
    seconds: float
    gflops: float | None = None       # compute-bound ops
    gbps: float | None = None         # memory-bound ops
    peak: str = ""                    # what the % is of ("FMA f32 peak", "copy bandwidth", ...)
    pct_of_peak: float | None = None
    peers: dict = field(default_factory=dict)  # name -> {"gflops"|"gbps": x, "ratio": ours / theirs}
    config: dict = field(default_factory=dict)
    correct: bool = True
    target: str = "host"
    joules: float | None = None
    watts_source: str = "modeled"     # "measured" (RAPL) or "modeled"
    flop_per_joule: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def table(rows: list[Row], title: str) -> Table:
    t = Table(title=title)
    for col in ("op", "shape", "dtype", "thr", "rate", "% of peak", "perf/W", "peers (ratio ours/peer)", "ok"):
        t.add_column(col, justify="right" if col in ("thr", "rate", "% of peak", "perf/W") else "left")
    for r in rows:
        rate = f"{r.gflops:,.1f} GFLOP/s" if r.gflops is not None else f"{r.gbps:,.1f} GB/s"
        pct = f"{r.pct_of_peak:.0f}% {r.peak}" if r.pct_of_peak is not None else "-"
        peers = ", ".join(f"{k} {v['ratio']:.2f}x" for k, v in r.peers.items()) or "-"
        ppw = f"{r.flop_per_joule / 1e9:,.1f} GFLOP/J {r.watts_source}" if r.flop_per_joule else "-"
        ok = "-" if r.target != "host" else "yes" if r.correct else "NO"  # priced rows ran nothing to check
        t.add_row(r.op, r.shape, r.dtype, str(r.threads), rate, pct, ppw, peers, ok)
    return t


def show(rows: list[Row], title: str) -> None:
    Console(width=200).print(table(rows, title))
