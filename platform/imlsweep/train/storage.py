"""Trial files on the trial's storage: a local directory, or s3:// / gs:// through pyarrow filesystems."""

from __future__ import annotations

import os

import pyarrow.fs as pafs


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in uri:
        uri = os.path.abspath(os.path.expanduser(uri))
    return pafs.FileSystem.from_uri(uri)


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def write_text(uri: str, text: str) -> None:
    filesystem, path = resolve(uri)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(text.encode("utf-8"))


def read_text(uri: str) -> str | None:
    """The file's text, or None when it does not exist."""
    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode("utf-8")


def upload_dir(local_dir: str, uri: str) -> None:
    """Copy a local folder to `uri`, replacing what was there."""
    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type == pafs.FileType.Directory:
        filesystem.delete_dir(path)
    filesystem.create_dir(path, recursive=True)
    pafs.copy_files(local_dir, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=filesystem)


def list_dirs(uri: str) -> list[str]:
    """Names of the folders directly under `uri` (empty when it does not exist)."""
    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type != pafs.FileType.Directory:
        return []
    infos = filesystem.get_file_info(pafs.FileSelector(path))
    return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)
