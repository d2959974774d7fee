#!/usr/bin/env bash
# Installs deploy-agent as a systemd service on this node, and deployctl next to it:
#
#   /usr/local/bin/deploy-agent, /usr/local/bin/deployctl
#   /etc/systemd/system/deploy-agent.service   (from scripts/deploy-agent.service)
#   /etc/deploy-agent/config.toml               (from scripts/config.toml; an existing one is kept)
#   /var/lib/deploy-agent                       (the data directory)
#
# then enables and starts (or restarts) the service. Re-running it upgrades the binaries;
# the restart keeps the apps running (KillMode=process; the agent re-adopts them).
#
# Usage: sudo scripts/install.sh [--from DIR] [--bin-dir DIR] [--root DIR] [--no-start]
#   --from DIR     take the binaries from DIR (default: build them with cargo build --release)
#   --bin-dir DIR  where the binaries go (default /usr/local/bin)
#   --root DIR     install under DIR instead of / (a staging tree or an image; implies --no-start)
#   --no-start     install only; do not enable or start the service
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$HERE/.." && pwd)"

FROM=""
BIN_DIR=/usr/local/bin
ROOT=""
START=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --from) FROM="$2"; shift 2 ;;
    --bin-dir) BIN_DIR="$2"; shift 2 ;;
    --root) ROOT="$2"; START=0; shift 2 ;;
    --no-start) START=0; shift ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z "$ROOT" && "$(id -u)" != 0 ]]; then
  echo "install.sh: run it as root (sudo), or with --root DIR to stage the files" >&2
  exit 1
fi

if [[ -z "$FROM" ]]; then
  echo "==> building release binaries (cargo build --release)"
  (cd "$ROOT_DIR" && cargo build --release --bin deploy-agent --bin deployctl)
  FROM="$ROOT_DIR/target/release"
fi
for b in deploy-agent deployctl; do
  [[ -x "$FROM/$b" ]] || { echo "install.sh: $FROM/$b is missing" >&2; exit 1; }
done

UNIT_DIR="$ROOT/etc/systemd/system"
CONF_DIR="$ROOT/etc/deploy-agent"
DATA_DIR="$ROOT/var/lib/deploy-agent"

echo "==> binaries into $ROOT$BIN_DIR"
install -d -m 0755 "$ROOT$BIN_DIR"
# Install to a temporary name and rename: a running agent keeps its old binary.
for b in deploy-agent deployctl; do
  install -m 0755 "$FROM/$b" "$ROOT$BIN_DIR/.$b.new"
  mv -f "$ROOT$BIN_DIR/.$b.new" "$ROOT$BIN_DIR/$b"
done

echo "==> config in $CONF_DIR, data in $DATA_DIR"
install -d -m 0755 "$CONF_DIR"
if [[ -f "$CONF_DIR/config.toml" ]]; then
  echo "    keeping the existing $CONF_DIR/config.toml"
else
  install -m 0644 "$HERE/config.toml" "$CONF_DIR/config.toml"
fi
# 0711: apps (each deployment runs as its own user, made by the agent) pass through to their
# own release; the agent keeps logs, records, secrets, auth.toml and tls/ at 0700/0600 below it.
install -d -m 0711 "$DATA_DIR"

echo "==> unit $UNIT_DIR/deploy-agent.service"
install -d -m 0755 "$UNIT_DIR"
sed "s#/usr/local/bin/deploy-agent#$BIN_DIR/deploy-agent#" "$HERE/deploy-agent.service" \
  > "$UNIT_DIR/deploy-agent.service"
chmod 0644 "$UNIT_DIR/deploy-agent.service"

if [[ "$START" != 1 ]]; then
  echo "installed (not started)"
  exit 0
fi
if [[ ! -d /run/systemd/system ]]; then
  echo "installed; systemd is not running on this machine, so the service was not started."
  echo "Run the agent by hand: $BIN_DIR/deploy-agent --config /etc/deploy-agent/config.toml"
  exit 0
fi
systemctl daemon-reload
if systemctl is-active --quiet deploy-agent; then
  echo "==> restarting deploy-agent (apps keep running)"
  systemctl restart deploy-agent
else
  echo "==> enabling and starting deploy-agent"
  systemctl enable --now deploy-agent
fi
systemctl --no-pager --lines=5 status deploy-agent || true
