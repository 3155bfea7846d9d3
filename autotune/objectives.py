"""What the tuner minimizes, and what one candidate scored.

Every objective is a cost (lower is better) computed from a candidate's seconds, joules and the useful
FLOPs of the call; "perf_per_watt" minimizes joules per FLOP and is shown as FLOP/J (higher is better).
A candidate that was pruned, failed to compile, crashed or computed a wrong result costs +inf.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from autotune.space import Config

INF = math.inf


@dataclass(frozen=True)
class Objective:
    name: str
    label: str                                   # the column header of what is shown
    cost: Callable[[float, float, float], float]  # (seconds, joules, flops) -> lower is better
    show: Callable[[float, float, float], str]


def seconds(s: float) -> str:
    if not math.isfinite(s):
        return "-"
    return f"{s * 1e3:.3f} ms" if s >= 1e-3 else f"{s * 1e6:.3f} us"


def joules(j: float) -> str:
    if not math.isfinite(j):
        return "-"
    return f"{j * 1e3:.3f} mJ" if j >= 1e-3 else f"{j * 1e6:.3f} uJ"


def _gflop_per_j(s: float, j: float, f: float) -> str:
    return f"{f / j / 1e9:.2f} GFLOP/J" if j > 0 else "-"


OBJECTIVES = {
    "perf_per_watt": Objective("perf_per_watt", "perf/W", lambda s, j, f: j / f if f > 0 else j, _gflop_per_j),
    "latency": Objective("latency", "latency", lambda s, j, f: s, lambda s, j, f: seconds(s)),
    "energy": Objective("energy", "energy", lambda s, j, f: j, lambda s, j, f: joules(j)),
    "edp": Objective("edp", "EDP", lambda s, j, f: j * s, lambda s, j, f: f"{j * s:.4g} J*s"),
}

STATUSES = ("ok", "priced", "pruned", "compile failed", "crashed", "wrong")


def get_objective(name: str | Objective) -> Objective:
    if isinstance(name, Objective):
        return name
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}") from None


@dataclass(frozen=True)
class Result:
    """One candidate's outcome. `status` is one of STATUSES: "ok" (verified and measured, or verified
    and priced on a modeled target), "priced" (modeled target, not verified), or a failure."""
    config: Config
    status: str
    seconds: float = INF
    joules: float = INF
    energy: str = ""              # "measured" | "modeled" ("" when nothing ran)
    modeled_seconds: float = INF  # the accelerator model's price of the config on the target
    modeled_joules: float = INF
    flops: float = 0.0            # counted FLOPs of this config (padding included)
    error: str = ""
    notes: tuple[str, ...] = ()   # capacity notes that did not prune (host caches), retiming
    compile_s: float = 0.0
    stored: bool = False          # read from the tuning database, not evaluated in this run
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failed(self) -> bool:
        return self.status in ("compile failed", "crashed", "wrong")

    def cost(self, objective: Objective, flops: float) -> float:
        """The objective's cost with `flops` useful FLOPs (inf unless ok or priced)."""
        if self.status not in ("ok", "priced") or not math.isfinite(self.seconds):
            return INF
        return objective.cost(self.seconds, self.joules, flops)

    def show(self, objective: Objective, flops: float) -> str:
        if self.status not in ("ok", "priced"):
            return self.status
        return objective.show(self.seconds, self.joules, flops)

    def with_(self, **changes) -> Result:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        d = {"status": self.status, "energy": self.energy, "flops": self.flops, "error": self.error,
             "notes": list(self.notes), "compile_s": round(self.compile_s, 4)}
        for k in ("seconds", "joules", "modeled_seconds", "modeled_joules"):
            v = getattr(self, k)
            d[k] = v if math.isfinite(v) else None
        d.update(self.extra)
        return d

    @classmethod
    def from_json(cls, config: Config, d: dict[str, Any]) -> Result:
        def num(k):
            v = d.get(k)
            return INF if v is None else float(v)
        status = d["status"]
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        extra = {k: d[k] for k in ("compiler", "time") if k in d}
        return cls(config, status, num("seconds"), num("joules"), str(d.get("energy", "")),
                   num("modeled_seconds"), num("modeled_joules"), float(d.get("flops", 0.0)),
                   str(d.get("error", "")), tuple(d.get("notes", ())), float(d.get("compile_s", 0.0)),
                   stored=True, extra=extra)


@dataclass
class TuneResult:
    """The outcome of tuning one kernel for one tuning key.

    `source` says where the best config came from: "tuned" (this run), "database" (an earlier run's
    record, nothing evaluated) or "default" (TILELANG_AUTOTUNE=0 and nothing stored)."""
    kernel: str
    key: tuple[str, ...]
    target: str
    objective: Objective
    strategy: str
    best: Config | None
    results: list[Result]
    flops: float
    source: str
    elapsed: float = 0.0
    candidates: int = 0           # configs in the space after the constraint
    compiled: int = 0             # compiled in this run
    pruned: int = 0               # rejected by the constraint or over the target's capacity
    measured: int = 0             # timed (host) or priced (modeled target) in this run
    reference: str = ""           # what outputs were checked against
    notes: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds: pricing, compiling, measuring...

    def ranked(self) -> list[Result]:
        """Results that scored, best first."""
        ok = [r for r in self.results if r.status in ("ok", "priced")]
        return sorted(ok, key=lambda r: (r.status != "ok", r.cost(self.objective, self.flops)))

    @property
    def best_result(self) -> Result | None:
        return next((r for r in self.results if r.config == self.best), None)

    @property
    def runner_up(self) -> Result | None:
        rest = [r for r in self.ranked() if r.config != self.best and r.ok]
        return rest[0] if rest else None

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.failed]

    @property
    def value(self) -> float:
        """The best config's cost (the objective's lower-is-better number; inf without a best)."""
        r = self.best_result
        return r.cost(self.objective, self.flops) if r is not None else INF

    def show(self, r: Result | None) -> str:
        return "-" if r is None else r.show(self.objective, self.flops)

    def table(self, top: int = 8):
        """A rich Table: the leaders, then every failure with its reason."""
        from rich.table import Table
        title = (f"autotune {self.kernel} [{', '.join(self.key)}] on {self.target.split('/')[0]}: "
                 f"{self.objective.name}, {self.strategy} ({self.source})")
        t = Table(title=title, title_justify="left")
        for col in ("#", "config", self.objective.label, "time", "energy", "model", "status"):
            t.add_column(col, justify="left" if col in ("config", "status") else "right")
        for i, r in enumerate(self.ranked()[:top], 1):
            mark = " *" if r.config == self.best else ""
            t.add_row(f"{i}{mark}", str(r.config), self.show(r), seconds(r.seconds),
                      f"{joules(r.joules)} {r.energy}", seconds(r.modeled_seconds),
                      r.status + (" (db)" if r.stored else "") + (f", {', '.join(r.notes)}" if r.notes else ""))
        for r in self.failed:
            t.add_row("-", str(r.config), "inf", "", "", seconds(r.modeled_seconds), f"{r.status}: {_first(r.error)}")
        return t

    def summary(self) -> str:
        best, up = self.best_result, self.runner_up
        lines = [f"best {self.best} -> {self.show(best)}" + (f" ({best.energy} energy)" if best else ""),
                 f"runner-up {up.config if up else '-'} -> {self.show(up)}",
                 f"{self.candidates} candidates: {self.measured} "
                 f"{'measured' if self.target.startswith('host/') else 'priced'}"
                 f", {self.compiled} compiled, {self.pruned} pruned, {len(self.failed)} failed; "
                 f"checked against {self.reference or '-'}; {self.elapsed:.2f} s"
                 + (f" ({', '.join(f'{k} {v:.2f} s' for k, v in self.phases.items())})" if self.phases else "")]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def print(self, console=None) -> None:
        import sys

        from rich.console import Console
        console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 150)
        if self.source == "database":  # one line: nothing ran
            console.print(f"autotune {self.kernel}: {self.best} from the tuning database "
                          f"({self.show(self.best_result)}, {self.objective.name})")
            return
        console.print(self.table())
        console.print(self.summary())


def _first(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 100 else line[:97] + "..."


class Progress:
    """The rich progress bars of a tuning run (pricing, compiling, measuring); silent when off."""

    def __init__(self, on: bool):
        self.bar = None
        if on:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()

    def add(self, name: str, n: int) -> None:
        if self.bar is None or n <= 0:
            return
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=0)
        self.bar.update(self.tasks[name], total=self.bar.tasks[self.tasks[name]].total + n)

    def advance(self, name: str) -> None:
        if self.bar is not None and name in self.tasks:
            self.bar.advance(self.tasks[name])
