"""One row per (op, shape, dtype, threads) measurement (or pricing), and how tilebench prints them."""
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
    peak: str = ""                    # what the % is of ("FMA peak 437", "copy bandwidth 27", ...)
    pct_of_peak: float | None = None
    # name -> {"gflops"|"gbps": x, "ratio": theirs' seconds / ours, "pct_of_peak", "flop_per_joule", "watts_source"};
    # a peer too slow to time here: {"gflops": its rate on a small product, "ratio": None, "note": why}
    peers: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    correct: bool | None = True       # checked against a reference before timing; None: priced, nothing ran
    target: str = "host"
    joules: float | None = None
    watts_source: str = "modeled"     # "measured" (RAPL) or "modeled"
    flop_per_joule: float | None = None
    flops: float | None = None        # FLOPs of one call (useful FLOPs for compute ops, counted for the others)
    nbytes: float | None = None       # off-chip bytes of one call (x of the roofline: flops / nbytes)
    bound: str | None = None          # priced rows: the resource the model says sets the time

    def as_dict(self) -> dict:
        return asdict(self)


def _rate(d: dict) -> str:
    return f"{d['gflops']:,.1f} GFLOP/s" if d.get("gflops") is not None else f"{d['gbps']:,.1f} GB/s"


def _peer(name: str, p: dict) -> str:
    if p.get("ratio") is None:
        return f"{name} {p.get('note', 'not timed')}"
    extra = [_rate(p)]
    if p.get("pct_of_peak") is not None:
        extra.append(f"{p['pct_of_peak']:.0f}%")
    if p.get("flop_per_joule"):
        extra.append(f"{p['flop_per_joule'] / 1e9:,.2f} GFLOP/J {p.get('watts_source', 'modeled')}")
    return f"{name} {p['ratio']:.2f}x ({', '.join(extra)})"


def table(rows: list[Row], title: str) -> Table:
    t = Table(title=title)
    for col in ("op", "shape", "dtype", "thr", "rate", "% of limit", "perf/W", "peers: ours/peer (their rate, %, perf/W)",
                "ok"):
        t.add_column(col, justify="right" if col in ("thr", "rate", "% of limit", "perf/W") else "left")
    for r in rows:
        rate = _rate(asdict(r))
        pct = f"{r.pct_of_peak:.0f}% of {r.peak}" if r.pct_of_peak is not None else "-"
        if r.bound:
            pct += f" ({r.bound}-bound)"
        peers = "\n".join(_peer(k, v) for k, v in r.peers.items()) or "-"
        ppw = f"{r.flop_per_joule / 1e9:,.2f} GFLOP/J {r.watts_source}" if r.flop_per_joule else "-"
        ok = "modeled" if r.correct is None else "yes" if r.correct else "[red]NO[/]"
        t.add_row(r.op, r.shape, r.dtype, str(r.threads), rate, pct, ppw, peers, ok)
    return t


def show(rows: list[Row], title: str) -> None:
    Console(width=200).print(table(rows, title))
