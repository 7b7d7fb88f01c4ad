#!/bin/sh
# Install fair-agent as a systemd service on this machine. Run as root from a checkout:
#
#   systemd/install.sh --watch /data/plate-reader [--watch /data/xrd ...]
#
# It creates the system user fair-agent, a virtual environment in /opt/fair-agent/venv with the
# agent, /etc/fair-agent/agent.toml (from `fair-agent init`, kept if it exists) and the rules in
# /etc/fair-agent/rules (kept if they exist), installs the unit and a drop-in that lets the service
# write to each watched folder (and nowhere else but its state directory), gives the fair-agent
# group write access to the folders (setgid, and a default ACL where setfacl exists, so that
# session folders made by the instrument inherit it), then enables and starts the service.
#
# Options:
#   --watch DIR     a folder to watch (repeatable; at least one unless agent.toml exists)
#   --prefix DIR    where the virtual environment goes (default /opt/fair-agent)
#   --wheels DIR    install from the wheels in DIR only (offline), not from PyPI
#   --no-start      enable, but do not start now
set -eu

PREFIX=/opt/fair-agent
WHEELS=
START=yes
SOURCE=$(cd "$(dirname "$0")/.." && pwd)
WATCHLIST=$(mktemp)
trap 'rm -f "$WATCHLIST"' EXIT

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --watch) [ $# -ge 2 ] || die "--watch needs a folder"; printf '%s\n' "$2" >> "$WATCHLIST"; shift 2 ;;
        --prefix) PREFIX=$2; shift 2 ;;
        --wheels) WHEELS=$2; shift 2 ;;
        --no-start) START=no; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[ "$(id -u)" -eq 0 ] || die "run me as root"
command -v python3 >/dev/null || die "python3 is missing"

if ! getent passwd fair-agent >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/fair-agent --no-create-home \
        --shell /usr/sbin/nologin --comment "fair-agent service" fair-agent
fi

python3 -m venv "$PREFIX/venv"
if [ -n "$WHEELS" ]; then
    "$PREFIX/venv/bin/pip" install --quiet --no-index --find-links "$WHEELS" fair-agent
else
    "$PREFIX/venv/bin/pip" install --quiet "$SOURCE"
fi

install -d -m 0755 /etc/fair-agent
[ -d /etc/fair-agent/rules ] || cp -r "$SOURCE/rules" /etc/fair-agent/rules
if [ ! -f /etc/fair-agent/agent.toml ]; then
    [ -s "$WATCHLIST" ] || die "give at least one --watch folder"
    set --
    while IFS= read -r dir; do set -- "$@" --watch "$dir"; done < "$WATCHLIST"
    "$PREFIX/venv/bin/fair-agent" init /etc/fair-agent/agent.toml --rules /etc/fair-agent/rules "$@"
fi

sed "s|/opt/fair-agent/|$PREFIX/|g" "$SOURCE/systemd/fair-agent.service" > /etc/systemd/system/fair-agent.service
install -d /etc/systemd/system/fair-agent.service.d
# Without --watch (a re-install), the existing drop-in stays as it is.
[ -s "$WATCHLIST" ] && {
    echo "# Written by systemd/install.sh: the folders fair-agent watches and writes sidecars into."
    echo "[Service]"
    while IFS= read -r dir; do
        install -d -m 2775 -g fair-agent "$dir"
        chgrp fair-agent "$dir"
        chmod g+rwxs "$dir"
        if command -v setfacl >/dev/null; then
            setfacl -m g:fair-agent:rwx -d -m g:fair-agent:rwx "$dir"
        else
            echo "install.sh: no setfacl; folders made inside $dir must be writable by group fair-agent" >&2
        fi
        # Quoted: a path with spaces stays one path.
        printf 'ReadWritePaths="%s"\n' "$dir"
    done < "$WATCHLIST"
} > /etc/systemd/system/fair-agent.service.d/watch.conf

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
systemctl enable fair-agent.service
if [ "$START" = yes ] && [ -d /run/systemd/system ]; then
    systemctl start fair-agent.service
    systemctl --no-pager status fair-agent.service || true
fi
echo "fair-agent installed: config /etc/fair-agent/agent.toml, rules /etc/fair-agent/rules, state /var/lib/fair-agent"
