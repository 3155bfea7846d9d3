"""Pictures for people (extra `plot`): a roofline of the suite's rows, and perf vs watts of a tuned space.

Energy and power on these machines are modeled unless RAPL was readable; the axes say which.
"""
from __future__ import annotations

from benchmarks.report import Row


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("plots need matplotlib: pip install -e '.[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def roofline(rows: list[Row], path: str, target: str = "host") -> None:
    """Achieved GFLOP/s (or GB/s) of each row against the peaks the rows were compared with, and a
    perf-vs-watts panel with the Pareto front of the rows that carry energy."""
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for r in rows:
        rate = r.gflops if r.gflops is not None else r.gbps
        ax.scatter(r.pct_of_peak or 0, rate, s=40)
        ax.annotate(f"{r.op} {r.dtype} {r.shape}", (r.pct_of_peak or 0, rate), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("% of the matching hardware limit (FMA / AMX peak, copy bandwidth)")
    ax.set_ylabel("GFLOP/s (compute ops) or GB/s (memory ops)")
    ax.set_yscale("log")
    ax.set_title(f"where each op stands ({target})")
    pts = [(r.joules / r.seconds, (r.gflops or 0), r) for r in rows if r.joules and r.seconds and r.gflops]
    source = "measured" if any(r.watts_source == "measured" for _, _, r in pts) else "modeled"
    for w, g, r in pts:
        ax2.scatter(w, g, s=40)
        ax2.annotate(f"{r.op} {r.dtype}", (w, g), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto([(w, g) for w, g, _ in pts])
    if front:
        ax2.plot(*zip(*front), "k--", lw=1, label="Pareto front")
        ax2.legend()
    ax2.set_xlabel(f"watts ({source})")
    ax2.set_ylabel("GFLOP/s")
    ax2.set_title("performance vs power")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both (fewer watts, more GFLOP/s), by increasing watts."""
    front, best = [], float("-inf")
    for w, g in sorted(points, key=lambda p: (p[0], -p[1])):
        if g > best:
            front.append((w, g))
            best = g
    return front
