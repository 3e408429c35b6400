"""Writing files so that nothing already saved is lost: a reader sees the old complete file or folder, or the new
complete one, never a mix.

- :func:`atomic_write_text` / :func:`atomic_write_bytes` / :func:`write_replacing`: one file, written beside its
  final name and renamed.
- :func:`commit_folder`: a whole folder (a pipeline with its model card, samples and metrics). The new contents are
  written into a hidden sibling; the entries of the old folder that should stay (checkpoints, logs, files the
  caller did not write) are hard-linked into it -- no copy, and a file still being appended to (a TensorBoard log)
  stays the same file -- and the two folders are swapped with one ``renameat2(RENAME_EXCHANGE)``. Where the system
  cannot exchange (not Linux, or a file system without it) the old folder is renamed aside and the new one into
  place, so for an instant the folder is absent, but never half-written.

A write that fails (a full disk, an exception, a killed process) leaves the old file or folder untouched; the
partial sibling is removed, or, after a kill, left as a hidden ``.<name>.genzoo-*`` entry that the next commit to
the same place removes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

STAGING_TAG = ".genzoo-"


def _staging_name(target: Path, kind: str, suffix: str = "") -> Path:
    return target.with_name(f".{target.name}{STAGING_TAG}{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's live process (or not a pid we can ask about): leave its files alone
    return True


def remove_stale_staging(target: Path) -> None:
    """Remove what an interrupted write to ``target`` left behind: hidden siblings named after it whose writing
    process is no longer running (a write in progress in another live process is left alone)."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    for stale in target.parent.glob(f".{target.name}{STAGING_TAG}*"):
        pid = stale.name[len(f".{target.name}{STAGING_TAG}"):].split("-")
        if len(pid) > 1 and pid[1].isdigit() and _pid_alive(int(pid[1])):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                stale.unlink()


def make_staging_folder(target, kind: str = "new") -> Path:
    """A new hidden, empty sibling folder of ``target`` to write into and then rename to ``target``, after removing
    what interrupted writes to ``target`` left (:func:`remove_stale_staging`)."""
    target = Path(target)
    remove_stale_staging(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_name(target, kind)
    staging.mkdir()
    return staging


def write_replacing(path, write: Callable[[Path], T]) -> T:
    """``write(temporary_path)`` to a hidden sibling of ``path`` with the same suffix (libraries that pick a format
    by suffix still do), then rename it to ``path``; a write that fails leaves ``path`` as it was. Returns what
    ``write`` returns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    tmp = _staging_name(path, "file", path.suffix)
    try:
        result = write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return result


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a sibling temporary file (fsynced) and a rename."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    write_replacing(path, write)
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


# ------------------------------------------------------------------------------------------------ owning a folder
LOCK_FILE = ".genzoo.lock"


class FolderInUseError(OSError):
    """Another live process holds the folder's lock; the message names it (pid, host, since when)."""


class FolderLock:
    """An exclusive advisory lock on a folder, held by this process until :meth:`release` or its exit, whatever
    the exit: ``flock`` on ``<folder>/.genzoo.lock``, which the system drops when the process ends, also on a
    ``SIGKILL``, so a lock is never left held by a dead process. The file records the holder (pid, host, start, what
    it does) and is emptied on release, so a holder that died without releasing is recognised by the next one
    (:attr:`stale`). The file is never deleted (deleting a lock file lets two processes each lock a different one),
    and it survives :func:`commit_folder`'s swap as a hard link of the same file.
    """

    def __init__(self, folder, what: str = "a genzoo run"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None
        self.stale: dict | None = None  # the record of a holder that died without releasing, once acquired

    @staticmethod
    def _read(fd: int) -> dict:
        import json

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            record = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
        except (ValueError, UnicodeDecodeError):
            return {"unreadable": True}
        return record if isinstance(record, dict) else {"unreadable": True}

    @staticmethod
    def describe(record: dict) -> str:
        if record.get("unreadable"):
            return "an unknown process"
        return (f"{record.get('what', 'a process')} (pid {record.get('pid')} on {record.get('host')}, since "
                f"{record.get('started')})")

    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`FolderInUseError` at once naming its holder."""
        import json
        import socket
        import time

        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory locks to take
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.describe(self._read(fd))
            os.close(fd)
            raise FolderInUseError(
                f"{self.folder} is in use by {holder}, which holds {self.path}; wait for it to finish or stop it, "
                "or choose another folder."
            ) from None
        except BaseException:
            os.close(fd)
            raise
        previous = self._read(fd)
        self.stale = previous or None
        record = {"what": self.what, "pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Empty the record and drop the lock (also done by the system when the process ends)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def __del__(self) -> None:  # a holder dropped without release (a trainer driven by hand): as the system would
        self.release()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ------------------------------------------------------------------------------------ folders that are what they claim
class OutsideFolderError(PermissionError):
    """A path inside a folder that leads out of it (a symlink to a file or folder elsewhere): never read, copied or
    uploaded. A ``PermissionError``, hence an ``OSError``: the command line reports it as one line, exit status 2."""


def check_inside(root, path) -> Path:
    """``path`` (a path under ``root``) if it stays inside ``root`` once every symlink on the way is resolved;
    otherwise :class:`OutsideFolderError` naming the path and where it leads. Returns the resolved path."""
    root_resolved = Path(os.path.realpath(root))
    path = Path(path)
    resolved = Path(os.path.realpath(path))
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise OutsideFolderError(
            f"{path} leads outside {root} (a symlink to {resolved}); genzoo reads, copies and uploads only what is "
            "inside the folder. Replace the link with the file itself, or remove it."
        )
    return resolved


def folder_files(root, under=None, refuse_others: bool = False) -> list[Path]:
    """Every regular file under ``under`` (default: ``root``; sorted, as paths under it), refusing with
    :class:`OutsideFolderError` any symlink that leads outside ``root``. Symlinks that stay inside are listed where
    they are (a folder reached twice is listed once, so a link loop ends). Anything that is neither a folder nor a
    regular file -- a device, FIFO or socket -- is left out, or with ``refuse_others`` refused with an ``OSError``
    naming it; a broken link is left out (there is nothing to read)."""
    root = Path(root)
    found, seen = [], set()

    def walk(folder: Path) -> None:
        real = os.path.realpath(folder)
        if real in seen:
            return
        seen.add(real)
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            path = folder / entry.name
            if entry.is_symlink():
                check_inside(root, path)
            if entry.is_dir():  # follows a link that stays inside
                walk(path)
            elif entry.is_file():
                found.append(path)
            elif refuse_others and os.path.exists(path):
                raise OSError(f"{path} is not a regular file (a device, FIFO or socket); refused unread")

    walk(Path(under) if under is not None else root)
    return sorted(found)


def read_limited(path, limit: int, what: str | None = None) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them: the bound is on bytes read, not on what
    ``st_size`` claims (0 for ``/dev/zero``). A device, FIFO or socket is refused without blocking, and a file
    longer than ``limit`` is refused after ``limit + 1`` bytes, each with an ``OSError`` naming ``path``."""
    label = what or str(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{label} is not a regular file (a device, FIFO or socket); refused unread")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise OSError(f"{label} is larger than the {limit} bytes allowed; refused")
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------------- folders
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``); ``False`` where the system
    or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"could not swap {a} and {b}: {os.strerror(code)}")


def link_tree(source: Path, destination: Path) -> None:
    """``destination`` as a copy of ``source`` made of hard links (a plain copy where links are not allowed)."""
    if source.is_symlink():
        os.symlink(os.readlink(source), destination)
    elif source.is_dir():
        destination.mkdir()
        for child in source.iterdir():
            link_tree(child, destination / child.name)
    else:
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)


def commit_folder(
    target,
    write: Callable[[Path], None],
    keep: Callable[[str], bool] | Iterable[str] | None = None,
) -> Path:
    """Replace the folder ``target`` with what ``write(staging_folder)`` writes, in one swap.

    Entries of the old ``target`` that ``write`` did not produce are carried over when ``keep(name)`` is true (or
    ``name in keep`` for a collection; ``None`` keeps them all). If ``write`` raises, ``target`` is untouched and the
    exception propagates. ``target`` may be relative (``.`` too) or a link to a folder (the folder is replaced, the
    link kept); a process whose working directory is inside ``target`` is moved into the new folder. Returns the
    absolute path of the folder.
    """
    target = Path(os.path.abspath(Path(target).expanduser()))  # "." and ".." have no sibling to stage in
    if target.is_symlink() and target.is_dir():
        target = target.resolve()  # write into the folder the link points at, keep the link
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file; a folder was expected there.")
    try:  # a process working inside the folder follows it to the new one (the old one is deleted by the swap)
        inside = Path.cwd().relative_to(target.resolve()) if target.exists() else None
    except (ValueError, OSError):
        inside = None
    staging = make_staging_folder(target)
    try:
        write(staging)
        if target.is_dir():
            wanted = (lambda name: True) if keep is None else keep if callable(keep) else set(keep).__contains__
            written = {p.name for p in staging.iterdir()}
            for entry in target.iterdir():
                if entry.name not in written and wanted(entry.name):
                    link_tree(entry, staging / entry.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not target.exists():
        os.rename(staging, target)
    elif exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now the old folder
    else:
        old = _staging_name(target, "old")
        os.rename(target, old)
        os.rename(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    if inside is not None and (target / inside).is_dir():
        os.chdir(target / inside)
    return target
