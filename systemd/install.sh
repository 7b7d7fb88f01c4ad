#!/bin/sh
# Install (or upgrade) fair-agent as a systemd service on this machine. Run as root from a checkout:
#
#   systemd/install.sh --watch /data/plate-reader [--watch /data/xrd ...]
#
# It creates the system user fair-agent, a virtual environment in /opt/fair-agent/venv with the
# agent, /etc/fair-agent/agent.toml (from `fair-agent init`; an existing one is kept and is then
# the list of watched folders) and the rules in /etc/fair-agent/rules (kept if they exist). It
# installs the unit and a drop-in that lets the service write to each watched folder and nowhere
# else but its state directory, and grants the fair-agent group access to the folders with ACLs
# (recursive, and default ACLs so that new session folders inherit them; owners, groups and modes
# are left as they are). With a [store] or [bus] in agent.toml, a second drop-in lets the service
# reach their addresses and hands it /etc/fair-agent/s3.credentials and nats.creds (root-only)
# through systemd's LoadCredential=. Then it enables the service and (re)starts it.
#
# Options:
#   --watch DIR     a folder to watch, for a new agent.toml (repeatable)
#   --prefix DIR    where the virtual environment goes (default /opt/fair-agent)
#   --wheels DIR    install from the wheels in DIR only (offline), not from PyPI
#   --no-acl        do not touch the folders' ACLs (give the fair-agent group access yourself)
#   --no-start      enable, but do not start now
set -eu

PREFIX=/opt/fair-agent
WHEELS=
START=yes
ACL=yes
CONFIG=/etc/fair-agent/agent.toml
STATE=/var/lib/fair-agent
SOURCE=$(cd "$(dirname "$0")/.." && pwd)
WATCHLIST=$(mktemp)
ROOTS=$(mktemp)
STORE_IPS=$(mktemp)
trap 'rm -f "$WATCHLIST" "$ROOTS" "$STORE_IPS"' EXIT

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --watch) [ $# -ge 2 ] || die "--watch needs a folder"; realpath -m -- "$2" >> "$WATCHLIST"; shift 2 ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; PREFIX=$2; shift 2 ;;
        --wheels) [ $# -ge 2 ] || die "--wheels needs a folder"; WHEELS=$2; shift 2 ;;
        --no-acl) ACL=no; shift ;;
        --no-start) START=no; shift ;;
        -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[ "$(id -u)" -eq 0 ] || die "run me as root"
command -v python3 >/dev/null || die "python3 is missing"
case "$PREFIX" in
    /*) ;;
    *) die "--prefix must be an absolute path" ;;
esac
# The prefix goes into ExecStart= and a sed expression: keep it to plain path characters.
printf '%s' "$PREFIX" | grep -q '^[A-Za-z0-9/._-]*$' || die "--prefix may hold only letters, digits and / . _ -"
[ "$ACL" = no ] || command -v setfacl >/dev/null || die "setfacl is missing (apt-get install acl), or pass --no-acl"

if ! getent passwd fair-agent >/dev/null; then
    useradd --system --user-group --home-dir "$STATE" --no-create-home \
        --shell /usr/sbin/nologin --comment "fair-agent service" fair-agent
fi

python3 -m venv "$PREFIX/venv"
if [ -n "$WHEELS" ]; then
    "$PREFIX/venv/bin/pip" install --quiet --upgrade --no-index --find-links "$WHEELS" 'fair-agent[transform]'
else
    "$PREFIX/venv/bin/pip" install --quiet --upgrade "$SOURCE[transform]"
fi

install -d -m 0755 /etc/fair-agent
[ -d /etc/fair-agent/rules ] || cp -r "$SOURCE/rules" /etc/fair-agent/rules
if [ ! -f "$CONFIG" ]; then
    [ -s "$WATCHLIST" ] || die "give at least one --watch folder"
    set --
    while IFS= read -r dir; do set -- "$@" --watch "$dir"; done < "$WATCHLIST"
    "$PREFIX/venv/bin/fair-agent" init "$CONFIG" --state-dir "$STATE" --rules /etc/fair-agent/rules "$@"
fi
# agent.toml is the one list of watched folders; the drop-in is made from it.
"$PREFIX/venv/bin/python" -c '
import sys
from pathlib import Path
from agent.core.config import load_config
for root in load_config(Path(sys.argv[1]), env={}).roots:
    print(root.path.expanduser().absolute())
' "$CONFIG" > "$ROOTS"
while IFS= read -r dir; do
    grep -Fxq -- "$dir" "$ROOTS" || die "$dir is not a watched folder in $CONFIG: add a [[roots]] table for it there, then run me again"
done < "$WATCHLIST"

sed "s|/opt/fair-agent/|$PREFIX/|g" "$SOURCE/systemd/fair-agent.service" > /etc/systemd/system/fair-agent.service
install -d /etc/systemd/system/fair-agent.service.d
{
    echo "# Written by systemd/install.sh from $CONFIG: the folders fair-agent writes sidecars into."
    echo "[Service]"
    while IFS= read -r dir; do
        if [ ! -d "$dir" ]; then
            install -d -m 0755 "$dir"
        fi
        if [ "$ACL" = yes ]; then
            # rwX: folders get x, files only what they had; d: what new folders and files inherit.
            setfacl -R -m g:fair-agent:rwX -m d:g:fair-agent:rwX "$dir"
        fi
        # systemd reads % as a specifier and \ and " as escapes in quoted words.
        printf 'ReadWritePaths="%s"\n' "$(printf '%s' "$dir" | sed 's/\\/\\\\/g; s/"/\\"/g; s/%/%%/g')"
    done < "$ROOTS"
} > /etc/systemd/system/fair-agent.service.d/watch.conf

# With a [store] or a [bus], the unit may reach their addresses (resolved now: run me again if
# they change) and gets their credentials from /etc/fair-agent/s3.credentials and nats.creds
# through systemd.
"$PREFIX/venv/bin/python" -c '
import socket, sys
from pathlib import Path
from urllib.parse import urlsplit
from agent.core.config import load_config
config = load_config(Path(sys.argv[1]), env={})
urls = ([config.store.endpoint] if config.store else []) + (config.bus.servers if config.bus else [])
found = set()
for text in urls:
    url = urlsplit(text)
    port = url.port or {"https": 443, "http": 80}.get(url.scheme, 4222)
    try:
        found |= {info[4][0] for info in socket.getaddrinfo(url.hostname, port, proto=socket.IPPROTO_TCP)}
    except socket.gaierror as exc:
        sys.exit(f"cannot resolve {url.hostname} ({text}): {exc}")
print(" ".join(sorted(found)))
' "$CONFIG" > "$STORE_IPS"
if [ -s "$STORE_IPS" ]; then
    # The endpoint's name must resolve inside the sandbox too: the resolvers of resolv.conf
    # (systemd-resolved's 127.0.0.53 is loopback, allowed already).
    RESOLVERS=$(awk '$1 == "nameserver" { print $2 }' /etc/resolv.conf 2>/dev/null | tr '\n' ' ')
    {
        echo "# Written by systemd/install.sh from $CONFIG: the object store and the event bus"
        echo "# fair-agent talks to, resolved now (run install.sh again if their addresses change),"
        echo "# and the DNS resolvers."
        echo "[Service]"
        echo "IPAddressAllow=$(cat "$STORE_IPS") $RESOLVERS"
        for secret in s3.credentials nats.creds; do
            if [ -f "/etc/fair-agent/$secret" ]; then
                chown root:root "/etc/fair-agent/$secret"
                chmod 0600 "/etc/fair-agent/$secret"
                echo "LoadCredential=$secret:/etc/fair-agent/$secret"
            fi
        done
    } > /etc/systemd/system/fair-agent.service.d/store.conf
else
    rm -f /etc/systemd/system/fair-agent.service.d/store.conf
fi

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
systemctl enable fair-agent.service
if [ "$START" = yes ] && [ -d /run/systemd/system ]; then
    systemctl restart fair-agent.service
    systemctl --no-pager status fair-agent.service || true
fi
echo "fair-agent installed: config $CONFIG, rules /etc/fair-agent/rules, state $STATE"
