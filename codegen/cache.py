"""The on-disk cache of object code: private directory, atomic writes, checksummed entries.

Loading object code runs it, so a directory another user could write to is refused outright, and an
entry whose checksum does not match (truncated, bit-flipped) is discarded and rebuilt.
"""
from __future__ import annotations

import hashlib
import os
import stat
import tempfile

_MAGIC = b"TLOBJ\x00v1"


class CacheDirError(RuntimeError):
    """The cache directory cannot be trusted."""


def private_dir(path: str) -> str:
    """Create `path` (mode 0700) if needed; refuse it if another user owns it or others can write it."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise CacheDirError(f"cache path {path} is not a directory")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise CacheDirError(f"refusing cache directory {path}: it belongs to uid {st.st_uid}, not to you "
                            "(set TILELANG_CACHE_DIR to a directory of your own)")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheDirError(f"refusing cache directory {path}: others can write to it (mode {oct(st.st_mode & 0o777)}), "
                            f"so code loaded from it could be theirs; run `chmod 700 {path}` or set TILELANG_CACHE_DIR")
    return path


class DiskCache:
    def __init__(self, path: str):
        self.path = private_dir(path)

    def _file(self, key: str) -> str:
        return os.path.join(self.path, f"{key}.o")

    def get(self, key: str) -> bytes | None:
        """The entry, or None if missing or corrupt (a corrupt entry is removed)."""
        try:
            with open(self._file(key), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        head, digest, payload = data[:len(_MAGIC)], data[len(_MAGIC):len(_MAGIC) + 32], data[len(_MAGIC) + 32:]
        if head != _MAGIC or hashlib.sha256(payload).digest() != digest:
            try:
                os.unlink(self._file(key))
            except FileNotFoundError:
                pass
            return None
        return payload

    def put(self, key: str, payload: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".o")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, self._file(key))  # atomic: readers see the old entry or the whole new one
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
