#!/bin/sh
# Remove onwatch's service and program:  sudo deploy/uninstall.sh [--purge]
#
# Stops and disables the unit and removes it, /opt/onwatch and
# /usr/local/bin/onwatch. Keeps the store (/var/lib/onwatch: incidents,
# timelines) and /etc/onwatch unless --purge, which deletes both.
set -eu
purge=no
case ${1:-} in
    --purge) purge=yes ;;
    "") ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "uninstall.sh: unknown argument $1 (only --purge)" >&2; exit 1 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "uninstall.sh: run it as root: sudo $0" >&2; exit 1; }

if systemctl cat onwatch.service >/dev/null 2>&1; then
    systemctl disable --now onwatch.service >/dev/null 2>&1 || true
fi
rm -f /etc/systemd/system/onwatch.service
rm -rf /etc/systemd/system/onwatch.service.d
systemctl daemon-reload
[ -L /usr/local/bin/onwatch ] && rm -f /usr/local/bin/onwatch
rm -rf /opt/onwatch
if [ $purge = yes ]; then
    # DynamicUser keeps the real directory under /var/lib/private.
    rm -rf /var/lib/onwatch /var/lib/private/onwatch /etc/onwatch
    echo "onwatch removed, with its store and /etc/onwatch"
else
    echo "onwatch removed; kept the store /var/lib/onwatch and /etc/onwatch (--purge deletes them)"
fi
