"""Atomic file writes: the one helper behind every file the package writes.

A write goes to a hidden temporary file in the destination directory
(``.<name>.tmp-XXXX``), is flushed to disk, then renamed over the target, and
the directory entry is synced: a crash or a full disk at any moment leaves
the previous file or the new one, never a truncated file. Temporaries of
interrupted writes can be found and removed with :func:`remove_stale_temps`.
"""
import contextlib
import errno
import os
import re
import tempfile

_TMP_MARK = ".tmp-"


def _tmp_pattern(name=None):
    base = re.escape(name) if name else r".+"
    return re.compile(rf"^\.{base}{re.escape(_TMP_MARK)}[A-Za-z0-9_]+$")


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    On any exception (including ``KeyboardInterrupt``) the temporary file is
    removed and ``path`` is left as it was.

    Raises:
        IsADirectoryError: ``path`` is an existing directory.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "output path is a directory", path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except FileExistsError:  # a file where a folder of the path should be
        raise NotADirectoryError(errno.ENOTDIR, "a part of the output path is a file", directory) from None
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}{_TMP_MARK}", dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path, text, encoding="utf-8"):
    """Write ``text`` to ``path`` atomically (UTF-8 by default)."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_save(obj, path):
    """Write ``obj`` with :func:`paddle.save` to ``path`` atomically."""
    import paddle

    with atomic_path(path) as tmp:
        paddle.save(obj, tmp)


def remove_stale_temps(directory, name=None):
    """Remove temporaries left by interrupted atomic writes in ``directory``.

    Args:
        directory: Folder to clean (not recursive).
        name: Only temporaries of this target file name; ``None``: all.

    Returns:
        The removed paths. Call it only where no other process is writing.
    """
    removed = []
    pattern = _tmp_pattern(name)
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for entry in entries:
        full = os.path.join(directory, entry)
        if pattern.match(entry) and os.path.isfile(full):
            with contextlib.suppress(OSError):
                os.remove(full)
                removed.append(full)
    return removed
