"""The pass pipeline: one ordered list of named IR -> IR passes."""
from __future__ import annotations

from codegen.ir import Kernel, format_kernel
from codegen.passes import dead_code, fuse_dot_accumulate, hoist_store_indices
from codegen.verify import verify

PIPELINE = (
    ("fuse_dot_accumulate", fuse_dot_accumulate),  # acc + dot(a, b) -> dot(a, b, acc)
    ("dead_code", dead_code),                      # drop nodes whose results are never used
    ("hoist_store_indices", hoist_store_indices),  # a loop result's store address computed before the loop
)


def run_pipeline(kernel: Kernel, *, dump: bool = False, verify_each: bool = False) -> Kernel:
    """Run every pass in order; `verify_each` checks the IR after each, `dump` prints it."""
    if verify_each:
        _verify(kernel, "frontend")
    if dump:
        print(f"// ---- {kernel.name}: after frontend\n{format_kernel(kernel)}")
    for name, fn in PIPELINE:
        kernel = fn(kernel)
        if verify_each:
            _verify(kernel, name)
        if dump:
            print(f"// ---- {kernel.name}: after {name}\n{format_kernel(kernel)}")
    return kernel


def _verify(kernel: Kernel, stage: str) -> None:
    errors = verify(kernel)
    if errors:
        raise AssertionError(f"IR verification failed after {stage}:\n" + "\n".join(errors))
