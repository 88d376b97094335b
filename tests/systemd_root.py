"""A real systemd booted as PID 1 of a PID and mount namespace over a Debian root.

The machines that run these tests have no systemd as PID 1, yet the unit's
behaviour (DynamicUser, StateDirectory, ProtectSystem=strict, Type=notify,
the watchdog, LoadCredential, `systemd-analyze security`) can only be shown
by a real one. So:

- `debian_root()` makes (once) a minimal Debian bookworm with systemd and
  Python by `debootstrap`, cached OUTSIDE the repository in
  `$ONWATCH_CACHE/debian-root` (default /var/cache/onwatch). It is built in
  a temporary directory and renamed into place only when complete, and it
  carries a version stamp: a half-built or outdated cache is never used, a
  missing one is rebuilt.
- `wheelhouse()` keeps the wheels of onwatch's dependencies (built outside
  with `pip wheel`, keyed by a hash of pyproject.toml), so that installing
  inside the root takes seconds and needs no index.
- `Booted.start()` puts a fresh overlay on top of the cached root (the cache
  is the read-only lower layer, every run writes to its own upper layer),
  copies the checkout to /usr/src/onwatch in it, and boots
  `systemd --system` there: `unshare --pid --fork --mount` (and its own
  cgroup, UTS and IPC namespaces, so that it sets no host name and makes no
  cgroups on the host), `/` made private, proc, a read-only sys, a /dev of
  a few nodes, a tmpfs on /run and /tmp, `pivot_root`. Units that would
  reach the host's kernel (sysctl, binfmt, udev, modules, the clock) are
  masked in each copy. `run()` drives it
  from outside with `nsenter -t PID -m -p`. `stop()` kills the namespace's
  PID 1 (and with it everything inside), unmounts and removes the layers.

The namespace shares the host's network: a receiver the test starts on
127.0.0.1 is reachable from the service, and nothing else is contacted.

Where this cannot work (not root, no unshare, no debootstrap, no overlayfs)
`require_booting()` skips with the reason -- except under CI (CI=true),
where it fails: `.ci/run` installs what is needed, a silent skip would hide
a broken pipeline.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.support import ROOT

CACHE = Path(os.environ.get("ONWATCH_CACHE", "/var/cache/onwatch"))
#: Bump when the root's make-up changes: an older cache is then rebuilt.
ROOT_VERSION = "bookworm-minbase-systemd-python3-1"
PACKAGES = "systemd,systemd-sysv,python3,python3-venv,dbus"
MIRROR = os.environ.get("ONWATCH_DEBIAN_MIRROR", "http://deb.debian.org/debian")
STAMP = ".onwatch-root-version"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Masked in every booted copy: units that need a console, that would reach out of the
#: namespaces into the host's kernel (its clock, sysctls, binfmt, modules, devices,
#: seats), or that only slow the boot.
MASKED = ("getty@.service", "serial-getty@.service", "console-getty.service",
          "getty.target", "systemd-timesyncd.service", "systemd-sysctl.service",
          "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
          "systemd-modules-load.service", "systemd-udevd.service",
          "systemd-udev-trigger.service", "systemd-udev-settle.service",
          "systemd-logind.service", "systemd-journald-audit.socket",
          "sys-kernel-config.mount", "sys-fs-fuse-connections.mount",
          "systemd-hwdb-update.service", "systemd-random-seed.service",
          "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
          "fstrim.timer")


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_booting() -> None:
    """Skip (fail under CI) with the reason when a namespace systemd cannot be booted here."""
    why = None
    if os.geteuid() != 0:
        why = "booting systemd in a namespace needs root"
    elif not all(shutil.which(t) for t in ("unshare", "nsenter")):
        why = "unshare/nsenter (util-linux) are missing"
    elif not (CACHE / "debian-root" / STAMP).exists() and not shutil.which("debootstrap"):
        why = "debootstrap is missing; install it with: apt-get install debootstrap"
    elif "overlay" not in Path("/proc/filesystems").read_text():
        why = "the kernel has no overlayfs"
    if why is None:
        return
    if _under_ci():
        pytest.fail(f"{why} -- .ci/run should have made this possible", pytrace=False)
    pytest.skip(why)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One builder at a time per cache entry (two test runs may start together)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def debian_root() -> Path:
    """The cached Debian root, built (about 100 s) when missing or outdated."""
    root = CACHE / "debian-root"
    with _locked("debian-root"):
        stamp = root / STAMP
        if stamp.exists() and stamp.read_text().strip() == ROOT_VERSION:
            return root
        tmp = Path(tempfile.mkdtemp(prefix="debian-root.", dir=CACHE))
        try:
            subprocess.run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}",
                            "bookworm", str(tmp), MIRROR], check=True, capture_output=True,
                           timeout=900)
            (tmp / "etc" / "hostname").write_text("onwatch-test\n")
            (tmp / "etc" / "machine-id").write_text("")  # systemd makes one at boot
            (tmp / STAMP).write_text(ROOT_VERSION + "\n")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if root.exists():
            old = CACHE / f"debian-root.old.{os.getpid()}"
            root.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(root)
        return root


def wheelhouse() -> Path:
    """Wheels of onwatch's dependencies and build backend, cached by pyproject.toml's hash."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    out = CACHE / f"wheels-{key}"
    with _locked("wheels"):
        if (out / ".complete").exists():
            return out
        tmp = Path(tempfile.mkdtemp(prefix="wheels.", dir=CACHE))
        try:
            pip = [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(tmp)]
            subprocess.run([*pip, str(ROOT), "setuptools>=68", "wheel"], check=True,
                           capture_output=True, timeout=600)
            for own in tmp.glob("onwatch-*.whl"):
                own.unlink()  # the project itself is installed from the checkout
            (tmp / ".complete").write_text(key + "\n")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        return out


def _copy_checkout(dest: Path) -> None:
    """The checkout as a user would clone it: no venv, no caches, no state."""
    skip = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".mypy_cache",
                                  ".ruff_cache", ".pytest_cache", "results", "state")
    shutil.copytree(ROOT, dest, ignore=skip, symlinks=True)


_BOOT = r"""
set -e
R="$1"
mount --make-rprivate /
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
# Read-only, as in a container: nothing in here manages the host's devices.
mount -t sysfs -o ro sysfs "$R/sys"
# A /dev of its own with the few nodes a system needs, not the host's devices.
mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev"
for n in null zero full random urandom tty; do
    touch "$R/dev/$n"
    mount --bind "/dev/$n" "$R/dev/$n"
done
mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
cd "$R"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
# Shared, as on a booted machine: systemd moves credentials mounts made in a
# helper namespace into place, which only propagates back between shared mounts.
mount --make-rshared /
exec env -i container=docker PATH=/usr/sbin:/usr/bin:/sbin:/bin /lib/systemd/systemd --system
"""


def _own_cgroups() -> list[Path]:
    """This process's cgroup in the hierarchies systemd uses (cgroup2, v1 name=systemd)."""
    where: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers in ("", "name=systemd"):
            where["cgroup2" if controllers == "" else "name=systemd"] = path
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[sep + 3].split(",")
        key = "cgroup2" if fstype == "cgroup2" else (
            "name=systemd" if fstype == "cgroup" and "name=systemd" in options else None)
        if key in where and fields[3] == "/":
            out.append(Path(fields[4]) / where.pop(key).lstrip("/"))
    return out


@dataclass
class Booted:
    """One booted systemd over a fresh overlay of the cached root."""

    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="onwatch-ns.")))
    pid: int = 0
    proc: subprocess.Popen[bytes] | None = None
    #: The namespace's own cgroups: its systemd sees them as its root (a cgroup
    #: namespace), so it neither touches nor collides with the host's hierarchy.
    cgroups: list[Path] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """The booted system's / as seen from outside (read and written directly by tests)."""
        return self.work / "merged"

    def start(self, timeout: float = 60.0) -> Booted:
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> Booted:
        lower = debian_root()
        wheels = wheelhouse()
        for d in ("upper", "ovwork", "merged"):
            (self.work / d).mkdir()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={self.work / 'upper'},"
                        f"workdir={self.work / 'ovwork'}", str(self.root)], check=True)
        etc = self.root / "etc" / "systemd" / "system"
        for unit in MASKED:
            (etc / unit).unlink(missing_ok=True)
            (etc / unit).symlink_to("/dev/null")
        _copy_checkout(self.root / "usr" / "src" / "onwatch")
        shutil.copytree(wheels, self.root / "var" / "cache" / "onwatch-wheels")
        log = open(self.work / "systemd.log", "wb")  # noqa: SIM115 - closed with the process
        name = f"onwatch-ns-{os.getpid()}-{self.work.name.rsplit('.', 1)[-1]}"
        self.cgroups = [d / name for d in _own_cgroups()]
        for group in self.cgroups:
            group.mkdir()
        enter = "".join(f'echo $$ > "{g}/cgroup.procs"; ' for g in self.cgroups)
        unshare = "exec unshare --cgroup --uts --ipc --pid --fork --mount sh -c \"$0\" boot \"$1\""
        self.proc = subprocess.Popen(["sh", "-c", enter + unshare, _BOOT, str(self.root)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        self.pid = self._systemd_pid(deadline)
        self._wait_running(deadline)
        return self

    def _systemd_pid(self, deadline: float) -> int:
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the namespace boot failed:\n{self.boot_log()}")
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if child.name() == "systemd":
                        return child.pid
            time.sleep(0.05)
        raise RuntimeError(f"systemd did not start in the namespace:\n{self.boot_log()}")

    def _wait_running(self, deadline: float) -> None:
        state = ""
        while time.monotonic() < deadline:
            state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"systemd did not finish booting (state {state!r}):\n"
                           f"{self.boot_log()}")

    def boot_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.work / "systemd.log").read_text(errors="replace")[-4000:]
        return ""

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 120.0,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the booted system (its mounts, its PIDs, as root)."""
        res = subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-p", "--", *argv],
                             capture_output=True, text=True, timeout=timeout, input=input,
                             env={"PATH": PATH, "LANG": "C.UTF-8"})
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {res.returncode}:\n"
                                 f"{res.stdout}\n{res.stderr}")
        return res

    def stop(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)  # PID 1 of the namespace: everything in it dies too
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        subprocess.run(["umount", "-l", str(self.root)], check=False, capture_output=True)
        for top in self.cgroups:  # empty now: remove the tree, deepest first
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
        shutil.rmtree(self.work, ignore_errors=True)
