#!/bin/sh
# Install or upgrade onwatch as a systemd service on Debian or Ubuntu:
#   sudo deploy/install.sh [--wheels DIR] [--no-start]
#
# - a virtual environment in /opt/onwatch with onwatch from this checkout
#   (what the unit's ExecStart runs), and /usr/local/bin/onwatch pointing at it;
# - /etc/onwatch/config.toml, a starter config, only if there is none
#   (a re-run upgrades the code in place and keeps your config), and
#   /etc/onwatch/secrets/; both root's only (0700/0600);
# - the unit in /etc/systemd/system, enabled, and started (or restarted
#   after an upgrade) unless --no-start.
# --wheels DIR installs from a directory of wheels without any index.
# Exit status: 0 installed; 1 something failed (said on stderr).
set -eu

PREFIX=/opt/onwatch
ETC=/etc/onwatch
UNIT=/etc/systemd/system/onwatch.service
SRC=$(cd "$(dirname "$0")/.." && pwd)
wheels="" start=yes

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --wheels) [ $# -ge 2 ] || die "--wheels needs a directory"; wheels=$2; shift 2 ;;
        --no-start) start=no; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run it as root: sudo $0"
command -v systemctl >/dev/null || die "systemctl not found: this installs a systemd service"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "onwatch needs Python 3.11 or newer as python3 (Debian 12, Ubuntu 22.04 or later)"
python3 -c 'import ensurepip, venv' 2>/dev/null \
    || die "python3-venv is missing: apt-get install python3-venv"

upgrade=no
[ -x "$PREFIX/bin/onwatch" ] && upgrade=yes
echo "== onwatch: $( [ $upgrade = yes ] && echo upgrading || echo installing ) in $PREFIX"
[ -x "$PREFIX/bin/python3" ] || python3 -m venv "$PREFIX"
if [ -n "$wheels" ]; then
    set -- --no-index --find-links "$wheels"
else
    set --
fi
"$PREFIX/bin/pip" install -q --disable-pip-version-check --upgrade "$@" "$SRC" \
    || die "pip could not install onwatch into $PREFIX"
install -m 0755 "$SRC/deploy/stage-config.sh" "$PREFIX/bin/onwatch-stage-config"
ln -sf "$PREFIX/bin/onwatch" /usr/local/bin/onwatch

install -d -m 0700 -o root -g root "$ETC" "$ETC/secrets"
created=no
if [ ! -e "$ETC/config.toml" ]; then
    install -m 0600 -o root -g root "$SRC/deploy/config.toml" "$ETC/config.toml"
    created=yes
fi
# Root's only, whatever an editor left: the service gets them as credentials.
chown -R root:root "$ETC"
chmod -R go-rwx "$ETC"
"$PREFIX/bin/onwatch" validate "$ETC/config.toml" \
    || die "$ETC/config.toml has problems (above); fix them, then run this again"

install -m 0644 "$SRC/systemd/onwatch.service" "$UNIT"
systemctl daemon-reload
systemctl enable onwatch.service >/dev/null 2>&1 || die "systemctl enable onwatch failed"
if [ $start = yes ]; then
    if systemctl is-active --quiet onwatch; then
        systemctl restart onwatch || die "onwatch did not restart: journalctl -u onwatch"
    else
        systemctl start onwatch || die "onwatch did not start: journalctl -u onwatch"
    fi
fi

echo "== onwatch $("$PREFIX/bin/onwatch" --version | cut -d' ' -f2) is installed"
[ $created = yes ] && echo "   starter config written to $ETC/config.toml"
[ $created = no ] && echo "   kept your config $ETC/config.toml"
cat <<EOF
Next:
  1. Edit $ETC/config.toml: your checks, and each contact's real Apprise URLs
     (secrets in $ETC/secrets/, named as "secrets/NAME" in urls_file).
  2. sudo onwatch validate && sudo systemctl reload onwatch
  3. sudo onwatch test-notify frontline     (every channel of a contact)
  4. Watch: systemctl status onwatch, journalctl -u onwatch -p warning,
     curl -s http://127.0.0.1:9847/metrics, sudo onwatch incidents
Uninstall: sudo $SRC/deploy/uninstall.sh [--purge]
EOF
