"""What the kernel offers to confine a process: resource limits, a network namespace and
Landlock. Each is applied by the process to itself, first thing, while it is still
single-threaded (before NumPy or TensorFlow start their thread pools): ``unshare`` of a
user namespace needs one thread, and Landlock restricts the calling thread and the
threads and processes it starts afterwards.

Landlock is used through its three system calls (``ctypes``), ABI-aware: each right is
asked for only where the running kernel knows it (facts.md section 11: ABI 7 here).
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import sys
from collections.abc import Iterable
from dataclasses import dataclass

# --- Landlock (include/uapi/linux/landlock.h) --------------------------------------------
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # every Linux arch
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
# /dev: reading (urandom), writing the null device, the terminal's ioctls
DEVICES = READ | FS_WRITE_FILE | FS_IOCTL_DEV


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),  # ABI 4
        ("scoped", ctypes.c_uint64),  # ABI 6
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)): 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@dataclass(frozen=True)
class Limits:
    """Resource limits of a confined process (``setrlimit``, soft and hard)."""

    memory_bytes: int  # RLIMIT_AS: address space, TensorFlow's reservations included
    cpu_seconds: int  # RLIMIT_CPU: SIGXCPU at the limit
    file_bytes: int  # RLIMIT_FSIZE: largest file written; SIGXFSZ beyond it
    open_files: int  # RLIMIT_NOFILE


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def apply_limits(limits: Limits) -> list[str]:
    """Lower this process's limits to ``limits`` (never raise one: a parent's lower limit
    stays); what could not be set is returned as notes."""
    notes = []
    for name, value in (
        ("RLIMIT_AS", limits.memory_bytes),
        ("RLIMIT_CPU", limits.cpu_seconds),
        ("RLIMIT_FSIZE", limits.file_bytes),
        ("RLIMIT_NOFILE", limits.open_files),
    ):
        which = getattr(resource, name)
        soft, hard = resource.getrlimit(which)
        new_hard = value if hard == resource.RLIM_INFINITY else min(hard, value)
        new_soft = new_hard if soft == resource.RLIM_INFINITY else min(soft, new_hard)
        if name == "RLIMIT_CPU":
            # the soft limit sends SIGXCPU (reported as the CPU limit); the hard one, a
            # few seconds later, SIGKILL for a process that ignores it
            new_hard = new_hard + 5 if hard == resource.RLIM_INFINITY else new_hard
        try:
            resource.setrlimit(which, (new_soft, new_hard))
        except (ValueError, OSError) as exc:
            notes.append(f"{name} not set: {exc}")
    return notes


def isolate_network() -> str | None:
    """Move this process into a new network namespace (no interface but a loopback that is
    down: nothing can be reached). Unprivileged, through a user namespace of its own that
    maps the user to itself; as root, directly. Returns why not, if it cannot."""
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    clone_newuser, clone_newnet = 0x10000000, 0x40000000
    if uid == 0 and libc.unshare(clone_newnet) == 0:
        return None
    if libc.unshare(clone_newuser | clone_newnet) != 0:
        return f"no network namespace: unshare failed ({os.strerror(ctypes.get_errno())})"
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError as exc:  # the namespace stands; only the identity mapping is missing
        return f"network namespace without an identity mapping ({exc.strerror})"
    return None


def landlock_abi() -> int:
    """The running kernel's Landlock ABI version; 0 without Landlock."""
    libc = _libc()
    abi = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(0, int(abi))


def landlock(readable: Iterable[str], writable: Iterable[str], devices: str = "/dev") -> str:
    """Restrict this process (and what it starts) to reading ``readable`` and ``devices``
    and writing ``writable`` only; with ABI 4, no TCP bind or connect; with ABI 6, no
    signals to processes outside the sandbox and no abstract UNIX sockets outside it.

    Returns what was applied (``"landlock ABI 7: ..."``); raises OSError when the kernel
    refuses (the caller degrades).
    """
    abi = landlock_abi()
    if abi < 1:
        raise OSError(errno.ENOSYS, "Landlock is not available in this kernel")
    handled = _FS_BY_ABI[max(k for k in _FS_BY_ABI if k <= abi)]
    attr = _RulesetAttr(handled, 0, 0)
    size = 8
    if abi >= 4:
        attr.handled_access_net, size = NET_BIND_TCP | NET_CONNECT_TCP, 16
    if abi >= 6:
        attr.scoped, size = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL, 24
    libc = _libc()
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        rules = [(p, READ) for p in readable]
        rules += [(devices, DEVICES)] + [(p, handled) for p in writable]
        for path, access in rules:
            _add_path_rule(libc, ruleset, path, access & handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    what = ["writes only to its private folders"]
    if abi >= 4:
        what.append("no TCP")
    if abi >= 6:
        what.append("no signals or abstract sockets outside")
    return f"Landlock ABI {abi}: " + ", ".join(what)


def _add_path_rule(libc: ctypes.CDLL, ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a folder this system does not have (/lib64, /opt): nothing to allow
    try:
        if not os.path.isdir(path):  # a file: only the rights a file can have
            access &= FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
        rule = _PathBeneathAttr(access, fd)
        if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(fd)


def system_readable() -> list[str]:
    """What any Python process here reads: the system's folders, this Python's own (its
    prefixes and every folder on ``sys.path``, which covers PYTHONPATH and site packages)
    and Keras' configuration folder."""
    folders = ["/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys"]
    folders += [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)]
    folders += [os.path.realpath(sys.executable)]
    folders += [p for p in sys.path if p and os.path.isabs(p)]
    # Keras' configuration (keras.json): TensorFlow's, tf_keras' and Keras 3's backends
    # read it at import, and an unreadable existing one is an error there
    folders.append(os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras"))
    return sorted({os.path.realpath(p) for p in folders} | set(folders))
