"""Exec a container's command inside a private mount namespace with the pod's volumes.

Run as ``python -I sandbox.py SPEC.json`` by the node runner; it is deliberately standalone
(stdlib only) because it starts once per container. The spec holds ``argv``, ``env``,
``workingDir``, ``mounts`` (``source``, ``target``, ``readOnly``) and ``keepVisible``. With
mounts, it needs CAP_SYS_ADMIN (root): it does what ``unshare --mount --propagation private``
followed by ``mount --bind`` would, then replaces itself with the command, keeping the pid.

Pods often mount volumes over directories such as /tmp, which may hold the very things the
container runs (a venv, the checkout, pytest's temp dir with the volume sources). So every
source and every ``keepVisible`` path is opened (O_PATH) before anything is mounted and
bound from ``/proc/self/fd/N``; host paths a volume would shadow are bound back on top of it.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(
        _libc.mount(source.encode() if source else None, target.encode(), None, flags, None),
        f"mount {source} -> {target}",
    )


def _prepare_target(is_dir: bool, target: str) -> None:
    """Bind mounts need an existing target of the same kind (directory or file)."""
    if is_dir:
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass


def _shadows(target: str, path: str) -> bool:
    return path != target and path.startswith(target.rstrip("/") + "/")


def _enter_namespace(mounts: list[dict], keep_visible: list[str]) -> None:
    if os.geteuid() != 0:
        raise PermissionError(
            "pod volumes are bind-mounted in a private mount namespace, which needs root "
            "(CAP_SYS_ADMIN); run the tests as root (CI does)"
        )
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    ordered = sorted(mounts, key=lambda m: m["target"].count("/"))
    # Hold every source (and every host path a target will shadow) before mounting anything.
    sources = [(m, os.open(m["source"], os.O_PATH), os.path.isdir(m["source"])) for m in ordered]
    restore = [
        (p, os.open(p, os.O_PATH))
        for p in keep_visible
        if os.path.isdir(p) and any(_shadows(m["target"], p) for m in mounts)
    ]
    for m, fd, is_dir in sources:
        _prepare_target(is_dir, m["target"])
        _mount(f"/proc/self/fd/{fd}", m["target"], MS_BIND | MS_REC)
        if m.get("readOnly"):
            _mount(None, m["target"], MS_BIND | MS_REMOUNT | MS_RDONLY)
    for path, fd in restore:
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, MS_BIND | MS_REC)
    for fd in [fd for _, fd, _ in sources] + [fd for _, fd in restore]:
        os.close(fd)


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    try:
        if spec["mounts"]:
            _enter_namespace(spec["mounts"], spec.get("keepVisible") or [])
        workdir = spec.get("workingDir") or "/"
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)
    except OSError as exc:
        print(f"fake-node: cannot set up container: {exc}", file=sys.stderr, flush=True)
        os._exit(126)
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])
    except OSError as exc:
        print(
            f"fake-node: cannot run {argv[0]!r}: {exc.strerror} "
            f"(commands must be on PATH={spec['env'].get('PATH', '')})",
            file=sys.stderr,
            flush=True,
        )
        os._exit(127)


if __name__ == "__main__":
    main()
