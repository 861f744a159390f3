"""Files on storage: a local directory, or s3:// / gs:// through pyarrow filesystems. Trials write their
directories through it, and sweeps their state, specs and results, so a sweep can live in a bucket.

What only local file IO can write (a built corpus, Tune's experiment state, W&B run files, a report)
goes to the location's folder on this machine: `local_folder`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow.fs as pafs


def is_remote(uri: str) -> bool:
    return "://" in uri


def absolute(location: str) -> str:
    """A location as it is recorded: a URI as given, a local folder made absolute."""
    return location if is_remote(location) else str(Path(location).expanduser().resolve())


def local_folder(location: str) -> Path:
    """This machine's folder of a location: the location itself when it is a local folder; for an s3:// or
    gs:// URI, a folder in the user's cache (XDG_CACHE_HOME, else ~/.cache)."""
    if not is_remote(location):
        return Path(location)
    scheme, path = location.split("://", 1)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "imlsweep" / scheme / path.strip("/")


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    if not is_remote(uri):
        uri = os.path.abspath(os.path.expanduser(uri))
    return pafs.FileSystem.from_uri(uri)


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def write_bytes(uri: str, data: bytes) -> tuple[int, int, int] | None:
    """Write a whole file; readers see the old file or the new one, never a part of it. A local file is
    written beside and renamed over (its `file_identity`, which the rename keeps, is returned); an object
    store replaces an object in one request anyway."""
    filesystem, path = resolve(uri)
    parent, name = path.rsplit("/", 1)
    filesystem.create_dir(parent, recursive=True)
    local = isinstance(filesystem, pafs.LocalFileSystem)
    target = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp" if local else path  # one per writer: writers may race
    with filesystem.open_output_stream(target) as stream:
        stream.write(data)
    if not local:
        return None
    identity = file_identity(target)
    filesystem.move(target, path)
    return identity


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def read_bytes(uri: str) -> bytes | None:
    """The file's content, or None when it does not exist."""
    if not is_remote(uri):  # a local file directly: a cache entry is read thousands of times a trial
        try:
            with open(os.path.expanduser(uri), "rb") as handle:
                return handle.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def file_identity(uri: str) -> tuple[int, int, int] | None:
    """(inode, size, modification time in ns) of a local file: a file written aside and renamed over it
    changes them. None for a remote URI or a missing file."""
    if is_remote(uri):
        return None
    try:
        status = os.stat(os.path.expanduser(uri))
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


def read_text(uri: str) -> str | None:
    """The file's text, or None when it does not exist."""
    data = read_bytes(uri)
    return None if data is None else data.decode("utf-8")


def is_dir(uri: str) -> bool:
    filesystem, path = resolve(uri)
    return filesystem.get_file_info(path).type == pafs.FileType.Directory


def delete(uri: str) -> None:
    """Remove a file or a folder with everything in it; nothing happens when it does not exist."""
    filesystem, path = resolve(uri)
    kind = filesystem.get_file_info(path).type
    if kind == pafs.FileType.Directory:
        filesystem.delete_dir(path)
    elif kind == pafs.FileType.File:
        filesystem.delete_file(path)


def upload_dir(local_dir: str, uri: str) -> None:
    """Copy a local folder to `uri`, replacing what was there."""
    delete(uri)
    filesystem, path = resolve(uri)
    filesystem.create_dir(path, recursive=True)
    pafs.copy_files(local_dir, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=filesystem)


def download_dir(uri: str, local_dir: str) -> None:
    """Copy the folder at `uri` with everything in it into a local folder."""
    filesystem, path = resolve(uri)
    pafs.copy_files(path, local_dir, source_filesystem=filesystem, destination_filesystem=pafs.LocalFileSystem())


def list_dirs(uri: str) -> list[str]:
    """Names of the folders directly under `uri` (empty when it does not exist)."""
    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type != pafs.FileType.Directory:
        return []
    infos = filesystem.get_file_info(pafs.FileSelector(path))
    return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)


def list_tree(uri: str) -> list[tuple[str, bool]]:
    """(path relative to `uri`, whether it is a folder) of everything under `uri`, from one recursive
    listing: an object store answers it with a request per 1000 files, not one per file asked about."""
    filesystem, path = resolve(uri)
    infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
    start = len(path.rstrip("/")) + 1
    return [(info.path[start:], info.type == pafs.FileType.Directory) for info in infos]
