import os
import tempfile

from hypothesis import configuration

# Compiled kernels go to a cache private to this test session, so runs never share stale entries.
os.environ.setdefault("TILELANG_CACHE_DIR", tempfile.mkdtemp(prefix="tilelang-test-cache-"))
# The repository's top level is fixed: hypothesis keeps its examples under tests/.
configuration.set_hypothesis_home_dir(os.path.join(os.path.dirname(__file__), ".hypothesis"))
