"""What kind of filesystem a path lives on, read from /proc/self/mountinfo.

Network and FUSE filesystems change how the agent behaves: change notifications do not cross the
network (the watcher polls instead), and a filesystem-wide sync does not reach the server (each
sidecar is fsynced on its own instead).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Filesystems whose files may change on another machine, or whose syncfs() proves nothing.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs", "9p", "davfs", "lustre"}
)


#: Local disk filesystems: small files there are page-cache work.
DISK_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs"})
#: Filesystems with no disk behind them: their files are in memory.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


def filesystem_type(path: Path, mountinfo: str | None = None) -> str:
    """The type of the filesystem that holds ``path`` (e.g. ``ext4``, ``nfs4``, ``fuse.sshfs``).

    ``"unknown"`` when /proc is not there to ask.
    """
    mountinfo = read_mountinfo() if mountinfo is None else mountinfo
    target = os.path.realpath(path)
    best, best_type = "", "unknown"
    for mount_point, fs_type in _mounts(mountinfo or ""):
        if _is_within(target, mount_point) and len(mount_point) >= len(best):
            best, best_type = mount_point, fs_type
    return best_type


def mount_points_below(path: Path, mountinfo: str) -> frozenset[str]:
    """The mount points strictly below ``path``, relative to it (``"a/share"``), from the text
    of /proc/self/mountinfo (read_mountinfo)."""
    top = os.path.realpath(path).rstrip("/")
    return frozenset(
        mount_point[len(top) + 1 :]
        for mount_point, _ in _mounts(mountinfo)
        if mount_point.startswith(top + "/") and mount_point != top + "/"
    )


def read_mountinfo() -> str | None:
    """/proc/self/mountinfo; None when /proc is not there to ask."""
    try:
        return Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None


def _mounts(mountinfo: str) -> list[tuple[str, str]]:
    """Each mount's point and filesystem type."""
    mounts = []
    for line in mountinfo.splitlines():
        # "<id> <parent> <maj:min> <root> <mount point> <options> [optional...] - <type> <source> <super>"
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if sep and len(fields) >= 5 and right:
            mounts.append((_unescape(fields[4]), right.split()[0]))
    return mounts


def is_network_filesystem(fs_type: str) -> bool:
    return fs_type in NETWORK_FILESYSTEMS or fs_type.startswith("fuse")


def is_loop_safe(fs_type: str) -> bool:
    """Whether the event loop's thread may open, read and write small files on this filesystem:
    a local disk's or memory's, where that is page-cache work. An allowlist: on any other (network,
    cluster, FUSE, stacked like overlay, automount points, ZFS with its own cache) even opening a
    file may wait for a server or a disk, and only threads do it."""
    return fs_type in DISK_FILESYSTEMS or fs_type in MEMORY_FILESYSTEMS


def _is_within(path: str, mount_point: str) -> bool:
    return mount_point == "/" or path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal: "\040" and so on.
    return (
        field.encode("utf-8", "surrogateescape")
        .decode("unicode_escape")
        .encode("latin-1")
        .decode("utf-8", "surrogateescape")
    )
