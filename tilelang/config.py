"""Every knob in one typed registry, read from the environment once and overridable in a scope.

    TILELANG_INTERPRET=1     run kernels through the NumPy reference executor
    TILELANG_DUMP_IR=1       print the tile IR after each pass of the pipeline
    TILELANG_DEBUG=1         verify the IR after every pass; raw tracebacks from the frontend
    TILELANG_CACHE_DIR=path  where compiled object code is cached (default ~/.cache/tilelang)
    TILELANG_DISK_CACHE=0    turn the disk cache off
    TILELANG_ISA=portable    target generic vector code (no AVX-512/AMX) even on a capable host
    TILELANG_DOT=fma         force the dot micro-kernel path (auto|amx|fma|portable)
    TILELANG_AUTOTUNE=0      use cached or default configs without tuning
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass, field


def _bool(s: str) -> bool:
    return s.strip().lower() not in ("", "0", "false", "no", "off")


@dataclass
class Knobs:
    interpret: bool = field(default=False, metadata={"env": "TILELANG_INTERPRET", "parse": _bool})
    dump_ir: bool = field(default=False, metadata={"env": "TILELANG_DUMP_IR", "parse": _bool})
    debug: bool = field(default=False, metadata={"env": "TILELANG_DEBUG", "parse": _bool})
    cache_dir: str = field(default=os.path.join(os.path.expanduser("~"), ".cache", "tilelang"),
                           metadata={"env": "TILELANG_CACHE_DIR", "parse": str})
    disk_cache: bool = field(default=True, metadata={"env": "TILELANG_DISK_CACHE", "parse": _bool})
    isa: str = field(default="auto", metadata={"env": "TILELANG_ISA", "parse": str, "choices": ("auto", "portable")})
    dot: str = field(default="auto", metadata={"env": "TILELANG_DOT", "parse": str,
                                               "choices": ("auto", "amx", "fma", "portable")})
    autotune: bool = field(default=True, metadata={"env": "TILELANG_AUTOTUNE", "parse": _bool})

    @classmethod
    def from_env(cls) -> Knobs:
        k = cls()
        for f in dataclasses.fields(cls):
            raw = os.environ.get(f.metadata["env"])
            if raw is not None:
                setattr(k, f.name, f.metadata["parse"](raw))
        k.check()
        return k

    def check(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.metadata['env']}={getattr(self, f.name)!r}: expected one of {choices}")


knobs = Knobs.from_env()


@contextlib.contextmanager
def scope(**overrides):
    """Temporarily override knobs: `with config.scope(interpret=True): ...`."""
    old = {k: getattr(knobs, k) for k in overrides}
    for k, v in overrides.items():
        if not hasattr(knobs, k):
            raise AttributeError(f"no knob named {k!r}")
        setattr(knobs, k, v)
    try:
        knobs.check()
        yield knobs
    finally:
        for k, v in old.items():
            setattr(knobs, k, v)
