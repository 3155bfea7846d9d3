"""The compile caches: keys, corrupt entries, concurrent compiles, and untrusted directories."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tilelang as tl
from codegen.cache import DiskCache

KERNEL = textwrap.dedent('''
    import tilelang as tl

    @tl.jit
    def scale(x, y, s, B: tl.constexpr = 128):
        for i in tl.grid(tl.cdiv(x.shape[0], B)):
            y[i * B:(i + 1) * B] = x[i * B:(i + 1) * B] * s
''')


@pytest.fixture
def kernel_module(tmp_path):
    (tmp_path / "tl_cache_kernel.py").write_text(KERNEL)
    sys.path.insert(0, str(tmp_path))
    import importlib
    mod = importlib.import_module("tl_cache_kernel")
    yield mod
    sys.path.remove(str(tmp_path))
    sys.modules.pop("tl_cache_kernel", None)


def entries(d):
    return sorted(p for p in os.listdir(d) if p.endswith(".o"))


def run_scale(mod):
    x = np.arange(300, dtype=np.float32)
    y = np.zeros_like(x)
    mod.scale(x, y, 3.0)
    np.testing.assert_array_equal(y, x * 3)


def test_disk_cache_entry_written_and_reused(tmp_path, kernel_module):
    cache = tmp_path / "cache"
    with tl.config.scope(cache_dir=str(cache)):
        run_scale(kernel_module)
        files = entries(cache)
        assert len(files) == 1
        assert os.stat(cache).st_mode & 0o777 == 0o700
        kernel_module.scale._cache.clear()
        mtime = os.stat(cache / files[0]).st_mtime_ns
        run_scale(kernel_module)  # served from disk: the entry is not rewritten
        assert os.stat(cache / files[0]).st_mtime_ns == mtime


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "garbage"])
def test_corrupt_entry_is_detected_and_rebuilt(tmp_path, kernel_module, damage):
    cache = tmp_path / "cache"
    with tl.config.scope(cache_dir=str(cache)):
        run_scale(kernel_module)
        (f,) = entries(cache)
        data = (cache / f).read_bytes()
        if damage == "truncate":
            data = data[: len(data) // 2]
        elif damage == "bitflip":
            data = data[:-100] + bytes([data[-100] ^ 0x10]) + data[-99:]
        else:
            data = b"not an object file"
        (cache / f).write_bytes(data)
        kernel_module.scale._cache.clear()
        run_scale(kernel_module)  # rebuilt, and correct
        assert (cache / f).read_bytes() != data
        assert DiskCache(str(cache)).get(f[:-2]) is not None


def test_unsafe_cache_directory_is_refused(tmp_path, kernel_module):
    cache = tmp_path / "shared"
    cache.mkdir()
    os.chmod(cache, 0o777)
    with tl.config.scope(cache_dir=str(cache)):
        with pytest.raises(tl.KernelError, match="others can write"):
            run_scale(kernel_module)
    assert entries(cache) == []


def test_cache_key_separates_specializations(tmp_path, kernel_module):
    cache = tmp_path / "cache"
    with tl.config.scope(cache_dir=str(cache)):
        run_scale(kernel_module)
        x = np.arange(10, dtype=np.float32)
        kernel_module.scale(x, np.zeros_like(x), 2.0, B=64)  # constexpr change
        xb = x.astype(tl.bfloat16.np)
        kernel_module.scale(xb, np.zeros_like(xb), 2.0)  # dtype change
        assert len(entries(cache)) == 3


def test_two_processes_compile_the_same_kernel_at_once(tmp_path, kernel_module):
    cache = tmp_path / "cache"
    script = textwrap.dedent(f'''
        import sys, numpy as np
        sys.path.insert(0, {str(tmp_path)!r})
        import tl_cache_kernel as m
        x = np.arange(1000, dtype=np.float32); y = np.zeros_like(x)
        m.scale(x, y, 2.0)
        assert (y == x * 2).all()
        print("ok")
    ''')
    env = dict(os.environ, TILELANG_CACHE_DIR=str(cache))
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert all(o[0].strip() == "ok" for o in outs)
    assert len(entries(cache)) == 1
    assert not [p for p in os.listdir(cache) if p.startswith(".tmp-")]  # no temp file left behind


def test_inspect_shows_every_level(kernel_module):
    x = np.arange(10, dtype=np.float32)
    out = kernel_module.scale.inspect(x, np.zeros_like(x), 2.0)
    assert "grid(" in out["tile_ir"] and "load(" in out["tile_ir"]
    assert "define" in out["llvm_ir"] and "tl_scale" in out["llvm_ir"]
    assert "tl_scale" in out["asm"]


def test_dump_ir_prints_each_pass(capsys):
    with tl.config.scope(dump_ir=True, interpret=True):
        @tl.jit
        def k(x, y):
            y[0:4] = x[0:4] + 1.0
        k(np.zeros(4, np.float32), np.zeros(4, np.float32))
    out = capsys.readouterr().out
    assert "after frontend" in out and "after dead_code" in out


def test_strided_call_after_contiguous_one_gets_its_own_code(kernel_module):
    """The unit-stride fact is part of the specialization, in memory and in the disk cache key."""
    x = np.arange(600, dtype=np.float32)
    y = np.zeros(300, np.float32)
    kernel_module.scale(x[:300], y, 1.0)
    np.testing.assert_array_equal(y, x[:300])
    kernel_module.scale._cache.clear()  # force the disk path for the strided call too
    kernel_module.scale(x[::2], y, 1.0)
    np.testing.assert_array_equal(y, x[::2])


def test_cache_directory_owned_by_another_user_is_refused(tmp_path, kernel_module):
    if not hasattr(os, "getuid") or os.getuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    cache = tmp_path / "theirs"
    cache.mkdir(mode=0o700)
    os.chown(cache, 65534, 65534)  # nobody
    with tl.config.scope(cache_dir=str(cache)):
        with pytest.raises(tl.KernelError, match="belongs to uid 65534"):
            run_scale(kernel_module)
