#!/bin/sh
# onwatch-stage-config SRC DEST PID: the ExecReload of onwatch.service.
#
# systemd loads credentials once per start, so a reload cannot reach the new
# /etc/onwatch through $CREDENTIALS_DIRECTORY. This copies SRC/config.toml and
# SRC/secrets/* into DEST with the credentials' names and modes (config.toml,
# secrets_<name>, 0400, owned by the service's dynamic user, who owns DEST's
# parent), swaps the copy into place in one rename, and sends SIGHUP to PID.
# The agent validates what it finds there; a broken file is logged and the
# running config kept. Run by systemd as root ("+"), never by the agent.
set -eu
src=$1 dest=$2 pid=$3
owner=$(stat -c %u:%g "$(dirname "$dest")")
umask 077
new="$dest.new.$$"
rm -rf "$new"
mkdir "$new"
cp "$src/config.toml" "$new/config.toml"
if [ -d "$src/secrets" ]; then
    for f in "$src"/secrets/*; do
        [ -f "$f" ] && cp "$f" "$new/secrets_${f##*/}"
    done
fi
chmod 0400 "$new"/*
chmod 0500 "$new"
chown -R "$owner" "$new"
old="$dest.old.$$"
[ -e "$dest" ] && mv "$dest" "$old"
mv "$new" "$dest"
rm -rf "$old"
kill -HUP "$pid"
