"""A real dovecot (IMAP and POP3) for the mail probes' tests, on free loopback ports.

`running_dovecot(ca)` starts `/usr/sbin/dovecot -F -c <tmp config>` with a throw-away
config: one passwd-file user, Maildir storage in a temporary directory, TLS with a
certificate from the test's trustme CA, plaintext login allowed (the probes decide
when to send a password), listeners on four free high ports. It stops the process it
started (by its pid) and removes the directory.

Dovecot refuses to run its login processes as root and refuses mail uid 0, so under
root it uses Debian's `dovecot`/`dovenull` system users (the package creates them)
and the directory is handed to `dovecot`; as anyone else it runs entirely as them.

Where dovecot is missing: under CI (`CI=true`) `require_dovecot()` fails the test
loudly — `.ci/run` installs it, a silent skip would hide a broken pipeline; on a
developer machine it skips with the command that installs it.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.support import free_ports

DOVECOT = "/usr/sbin/dovecot"
USER = "probe"
# Quote, backslash and non-ASCII: the IMAP client must quote or send it as a literal.
PASSWORD = 'pä"ss\\wörd 7'


def require_dovecot() -> str:
    if os.access(DOVECOT, os.X_OK):
        return DOVECOT
    why = (f"dovecot is not installed ({DOVECOT} missing); "
           "install it with: apt-get install dovecot-imapd dovecot-pop3d")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{why} -- .ci/run should have installed it", pytrace=False)
    pytest.skip(why)


@dataclass
class Dovecot:
    root: Path
    imap: int
    imaps: int
    pop3: int
    pop3s: int
    ca_file: str
    uid: int
    gid: int
    user: str = USER
    password: str = PASSWORD

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / self.user

    def deliver(self, message: bytes) -> None:
        """Drop a message into the user's INBOX the way an MDA does: tmp/, then new/."""
        name = f"{time.time_ns()}.P{os.getpid()}.onwatch-test"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(message)
        if os.geteuid() == 0:
            os.chown(tmp, self.uid, self.gid)
        tmp.rename(self.maildir / "new" / name)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _config(root: Path, ports: list[int], login_user: str, internal_user: str, uid: int,
            gid: int) -> str:
    imap, imaps, pop3, pop3s = ports
    # chroot is emptied: an unprivileged master cannot chroot its login processes.
    return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal_user}
default_internal_group = {grp.getgrgid(gid).gr_name}
default_login_user = {login_user}
mail_location = maildir:{root}/mail/%u
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # No auth penalty (seconds of delay for an address after a failed login): the tests
  # fail logins on purpose. Dovecot's documented switch: a socket nobody may open.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def _prepare(root: Path, ca: trustme.CA) -> tuple[str, str, int, int, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n", encoding="utf-8")
    me = pwd.getpwuid(os.geteuid())
    if me.pw_uid == 0:
        mail, login = pwd.getpwnam("dovecot"), "dovenull"
    else:
        mail, login = me, me.pw_name
    maildir = root / "mail" / USER
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (root / "home").mkdir()
    os.chmod(root, 0o755)  # mkdtemp makes it 0700; the mail user must get through
    if me.pw_uid == 0:
        for path in [root / "mail", root / "home", *(root / "mail").rglob("*")]:
            os.chown(path, mail.pw_uid, mail.pw_gid)
    return str(ca_file), login, mail.pw_uid, mail.pw_gid, mail.pw_name


def _wait_listening(proc: subprocess.Popen[bytes], port: int, d: Dovecot) -> bool:
    """Bounded: up to 10 s in 50 ms steps; False when dovecot exited."""
    for _ in range(200):
        if proc.poll() is not None:
            return False
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    raise AssertionError(f"dovecot did not listen on {port} within 10s:\n{d.log()}")


@contextlib.contextmanager
def running_dovecot(ca: trustme.CA) -> Iterator[Dovecot]:
    binary = require_dovecot()
    root = Path(tempfile.mkdtemp(prefix="onwatch-dovecot-"))  # short: socket paths
    proc: subprocess.Popen[bytes] | None = None
    try:
        ca_file, login, uid, gid, internal = _prepare(root, ca)
        for _attempt in range(3):  # a free port may be taken between probing and binding
            ports = free_ports(4)
            (root / "dovecot.conf").write_text(_config(root, ports, login, internal, uid, gid))
            imap, imaps, pop3, pop3s = ports
            d = Dovecot(root, imap, imaps, pop3, pop3s, ca_file, uid, gid)
            with open(root / "stderr.log", "ab") as err:
                proc = subprocess.Popen([binary, "-F", "-c", str(root / "dovecot.conf")],
                                        stdin=subprocess.DEVNULL, stdout=err, stderr=err)
            if all(_wait_listening(proc, p, d) for p in ports):
                break
            proc.wait(10)
        else:
            raise AssertionError(f"dovecot would not start:\n{d.log()}\n"
                                 f"{(root / 'stderr.log').read_text(errors='replace')}")
        yield d
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)
