"""`--shapes` and `--dtype` of tilebench: parsed and checked against the suites before anything runs.

Each `--shapes` argument is `[OP=]SHAPE[,SHAPE...]`, a shape being dims joined by 'x', in each op's convention
(see `benchmarks.suites`)."""
from __future__ import annotations

import math
from collections.abc import Sequence

from benchmarks.suites import SUITES, ShapeError, _check_head_dim

MAX_ELEMENTS = 1 << 31  # of any one array of a --shapes case (a typo like 1024000x1024000 fails early)



def _parse_shape(text: str, where: str) -> tuple[int, ...]:
    parts = text.strip().lower().split("x")
    if not text.strip() or not all(p.strip().isdigit() for p in parts):
        raise ShapeError(f"{where}: '{text}' is not a shape: write its dims as positive integers joined by 'x', "
                         "e.g. 1024x1024x1024")
    dims = tuple(int(p) for p in parts)
    if any(d <= 0 for d in dims):
        raise ShapeError(f"{where}: '{text}' has a zero dim; every dim must be >= 1")
    return dims


def _conventions(name: str) -> str:
    return " or ".join(SUITES[name].shapes.values())


def parse_shapes(specs: Sequence[str] | None, names: Sequence[str]) -> dict[str, tuple[tuple[int, ...], ...]]:
    """`--shapes` arguments -> {suite: shapes}. Each argument is `[OP=]SHAPE[,SHAPE...]`, a shape being dims
    joined by 'x'. Shapes with an OP= prefix go to that op only; the others go to every op of the run, each
    of which must take their number of dims. Suites without shapes here run their defaults."""
    out: dict[str, list] = {}
    for spec in specs or ():
        if spec.strip() in ("run", "tune", "list", "targets"):
            raise ShapeError(f"--shapes: '{spec}' is a command, not a shape: put --shapes after the command and "
                             "its ops (tilebench run OPS... --shapes ...)")
    for spec in specs or ():
        op, sep, body = spec.partition("=")
        if sep:
            op = op.strip()
            if op not in SUITES:
                raise ShapeError(f"--shapes {spec}: unknown op '{op}'; choose from {', '.join(SUITES)}")
            if op not in names:
                raise ShapeError(f"--shapes {spec}: '{op}' is not among the ops of this run ({', '.join(names)})")
            targets = [op]
        else:
            body, targets = spec, list(names)
        if not body.strip():
            raise ShapeError(f"--shapes {spec}: no shapes given")
        for text in body.split(","):
            dims = _parse_shape(text, f"--shapes {spec}")
            for name in targets:
                if len(dims) not in SUITES[name].shapes:
                    hint = "" if sep else (" (prefix shapes with their op when a run has several, e.g. "
                                           "--shapes matmul=1024x1024x1024)")
                    raise ShapeError(f"--shapes: {name} takes {_conventions(name)}; '{text}' has {len(dims)} "
                                     f"dim{'s' if len(dims) > 1 else ''}{hint}")
                if name == "attention":
                    _check_head_dim([dims])
                if max(math.prod(dims[:2]) if name == "matmul" else 0, _largest_array(name, dims)) > MAX_ELEMENTS:
                    raise ShapeError(f"--shapes: {name} {text} needs arrays of more than {MAX_ELEMENTS:,} elements")
                out.setdefault(name, []).append(dims)
    return {k: tuple(v) for k, v in out.items()}


def _largest_array(name: str, dims: tuple[int, ...]) -> int:
    if len(dims) == 3:  # MxNxK
        m, n, k = dims
        return max(m * k, k * n, m * n)
    return math.prod(dims)


def check_dtypes(dtypes: Sequence[str] | None, names: Sequence[str]) -> None:
    """Every --dtype must be one that some op of the run takes."""
    if not dtypes:
        return
    known = sorted({d for n in names for d in SUITES[n].dtypes})
    bad = [d for d in dtypes if d not in known]
    if bad:
        raise ShapeError(f"--dtype {', '.join(bad)}: not a dtype of {', '.join(names)}; choose from {', '.join(known)}")
