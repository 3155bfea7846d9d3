"""Pictures for people (extra `plot`): a roofline of the suite's rows on the chosen target, and performance vs
power of a tuned space (every config of an op's tuning space) with its Pareto front.

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


def roofline(rows: list[Row], path: str, target: str, roofs: dict, space: list[dict], space_title: str = "") -> None:
    """Left: each row at (FLOP per off-chip byte, achieved GFLOP/s) under the target's roofs
    (`roofs` = {"compute": {label: GFLOP/s}, "bandwidth": (label, GB/s)}). Right: the configs of a tuned
    space (`space` = [{"gflops", "watts", "source"}]) by watts and GFLOP/s, the Pareto front highlighted."""
    import numpy as np
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(15, 6))

    pts = [(r.flops / r.nbytes, r.flops / r.seconds / 1e9, r) for r in rows if r.flops and r.nbytes and r.seconds]
    xs = [x for x, _, _ in pts] or [1.0]
    lo, hi = min(xs) / 4, max(xs) * 4
    grid = np.geomspace(lo, hi, 200)
    bw_label, bw = roofs.get("bandwidth", ("", 0.0))
    styles = iter(["-", "--", "-.", ":"] * 4)
    for label, peak in sorted(roofs.get("compute", {}).items(), key=lambda kv: kv[1]):
        y = np.minimum(peak, grid * bw) if bw else np.full_like(grid, peak)
        ax.plot(grid, y, next(styles), color="gray", lw=1.2, label=f"{label} {peak:,.0f} GFLOP/s")
    if bw:
        ax.plot(grid, grid * bw, ":", color="tab:blue", lw=0.8, label=f"{bw_label} {bw:,.1f} GB/s")
    markers = {}
    for x, y, r in pts:
        key = r.op.split()[0]
        m = markers.setdefault(key, "osD^v<>ph*"[len(markers) % 10])
        ax.scatter(x, y, s=36, marker=m, zorder=3)
        ax.annotate(f"{r.op} {r.dtype} {r.shape}" + (f" {r.pct_of_peak:.0f}%" if r.pct_of_peak is not None else ""),
                    (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per off-chip byte)")
    ax.set_ylabel("GFLOP/s")
    source = "measured" if target == "host" else "modeled"
    ax.set_title(f"roofline on {target} ({source} rates)")
    ax.legend(fontsize=7, loc="lower right")

    good = [p for p in space if p.get("watts") and p.get("gflops")]
    src = "measured" if good and all(p.get("source") == "measured" for p in good) else "modeled"
    if good:
        ax2.scatter([p["watts"] for p in good], [p["gflops"] for p in good], s=14, alpha=0.5, color="tab:gray",
                    label=f"{len(good)} configs")
        front = pareto([(p["watts"], p["gflops"]) for p in good])
        ax2.plot(*zip(*front), "o-", color="tab:red", lw=1.5, ms=5, label=f"Pareto front ({len(front)})")
        best = max(good, key=lambda p: p["gflops"] / p["watts"])
        ax2.annotate(f"best GFLOP/W: {best['config']}", (best["watts"], best["gflops"]), fontsize=7,
                     xytext=(-5, -14), textcoords="offset points", ha="right")
        ax2.legend(fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no tuned space to show", ha="center", transform=ax2.transAxes)
    ax2.set_xlabel(f"watts ({src})")
    ax2.set_ylabel("GFLOP/s")
    ax2.set_title(space_title or "performance vs power of a tuned space", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both (fewer watts, more GFLOP/s), by increasing watts."""
    front, best = [], float("-inf")
    for w, g in sorted(points, key=lambda p: (p[0], -p[1])):
        if g > best:
            front.append((w, g))
            best = g
    return front
