"""cffi (API mode) builder for the C runtime extension `csrc._runtime`.

Two ways in:

- At install time, pyproject.toml declares the extension `csrc._runtime` (its C sources)
  and routes `build_ext` to `BuildExt` below, which has cffi emit the binding's C source
  into the build directory and compiles it together with runtime.c.
- By hand, from the repository root: `python csrc/build.py` builds the extension in place
  (csrc/_runtime*.so plus intermediate files, all git-ignored).

The repository's top level is fixed, so `Build` and `EggInfo` move setuptools' default
`build/` and `*.egg-info/` from the project root into csrc/_build (git-ignored there).

The cdef below is the Python-visible part of runtime.h; API mode compiles the binding
against runtime.h itself, so the C compiler checks that the two agree.
"""

from __future__ import annotations

import os
from pathlib import Path

from cffi import FFI
from setuptools.command.build import build
from setuptools.command.build_ext import build_ext
from setuptools.command.egg_info import egg_info

MODULE = "csrc._runtime"
CSRC = Path(__file__).resolve().parent
BUILD_DIR = "csrc/_build"  # relative to the project root, setuptools' working directory
COMPILE_ARGS = ["-O2", "-pthread"]
LINK_ARGS = ["-pthread"]

CDEF = """
#define TL_OK ...
#define TL_EINVAL ...
#define TL_ENOMEM ...
#define TL_ESYS ...
#define TL_EBUSY ...

typedef void (*tl_body_fn)(void *ctx, int64_t begin, int64_t end);

int tl_parallel_for(tl_body_fn fn, void *ctx, int64_t n, int64_t grain);
int tl_set_num_threads(int n);
int tl_get_num_threads(void);
void *tl_aligned_alloc(size_t alignment, size_t size);
void tl_aligned_free(void *p);
int tl_request_amx(void);
uint64_t tl_cycles(void);
int64_t tl_now_ns(void);
const char *tl_last_error(void);

/* A loop body implemented in Python, for the tests (tests/csrc/test_runtime.py). */
extern "Python" void _tl_test_body(void *ctx, int64_t begin, int64_t end);
"""


def make_ffibuilder() -> FFI:
    """The cffi builder; source paths are relative to the repository root."""
    ffibuilder = FFI()
    ffibuilder.cdef(CDEF)
    ffibuilder.set_source(
        MODULE,
        '#include "runtime.h"',
        sources=["csrc/runtime.c"],
        include_dirs=["csrc"],
        depends=["csrc/runtime.h"],
        extra_compile_args=COMPILE_ARGS,
        extra_link_args=LINK_ARGS,
    )
    return ffibuilder


ffibuilder = make_ffibuilder()


class BuildExt(build_ext):
    """setuptools `build_ext` that generates the cffi binding for `csrc._runtime`."""

    def build_extension(self, ext) -> None:
        if ext.name == MODULE:
            self._add_cffi_binding(ext)
        super().build_extension(ext)

    def _add_cffi_binding(self, ext) -> None:
        binding = os.path.join(self.build_temp, "cffi", "_runtime.c")
        os.makedirs(os.path.dirname(binding), exist_ok=True)
        ffibuilder.emit_c_code(binding)  # rewrites the file only when its text changes
        ext.sources = [binding] + [src for src in ext.sources if src != binding]
        for flags, extra in (
            (ext.extra_compile_args, COMPILE_ARGS),
            (ext.extra_link_args, LINK_ARGS),
        ):
            flags.extend(flag for flag in extra if flag not in flags)
        if "csrc" not in ext.include_dirs:
            ext.include_dirs.append("csrc")
        if "csrc/runtime.h" not in ext.depends:
            ext.depends.append("csrc/runtime.h")


class Build(build):
    """setuptools `build`, defaulting to csrc/_build instead of build/ at the root."""

    def initialize_options(self) -> None:
        super().initialize_options()
        self.build_base = BUILD_DIR


class EggInfo(egg_info):
    """setuptools `egg_info`, defaulting to csrc/_build instead of the project root."""

    def initialize_options(self) -> None:
        super().initialize_options()
        self.egg_base = BUILD_DIR

    def finalize_options(self) -> None:
        if self.egg_base == BUILD_DIR:
            os.makedirs(BUILD_DIR, exist_ok=True)  # egg_info requires it to exist
        super().finalize_options()


if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(CSRC.parent), verbose=True)
