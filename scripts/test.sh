#!/usr/bin/env bash
# Installs what the tests need, builds the workspace, and runs every test: the unit tests and
# the end-to-end tests in tests/, which start real deploy-agent and deployctl binaries on
# 127.0.0.x addresses and deploy small Python apps from temporary git repositories.
#
# Works on a fresh Debian machine with the Rust toolchain, git and python3 (with pip);
# installs uv (pip) and etcd (apt) when missing.
# Environment:
#   RUST_TEST_THREADS   parallel tests per test binary (default 4: e2e tests mostly wait)
#   E2E_SKIP_UV=1       do not install uv (the agent then uses python3 -m venv + pip)
#
# Installs Debian's haproxy (the load-balancer test) with apt-get when it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n==== %s ====\n' "$*"; }

section "tools"
for tool in cargo git python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is required and not on PATH" >&2
    exit 1
  fi
done
cargo --version
git --version
python3 --version

# uv makes the agent's package installs fast; without it the agent uses venv + pip.
if [[ "${E2E_SKIP_UV:-}" != 1 ]] && ! command -v uv >/dev/null 2>&1; then
  echo "uv not found: installing it with pip"
  python3 -m pip install --quiet --disable-pip-version-check uv \
    || python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages uv \
    || echo "warning: could not install uv; the agent will fall back to python3 -m venv + pip"
  # pip may put it in a scripts directory that is not on PATH (pyenv shims, --user).
  for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
             "$(python3 -m site --user-base 2>/dev/null)/bin"; do
    if [[ -x "$dir/uv" ]] && ! command -v uv >/dev/null 2>&1; then
      export PATH="$dir:$PATH"
    fi
  done
  command -v pyenv >/dev/null 2>&1 && pyenv rehash 2>/dev/null || true
fi
if command -v uv >/dev/null 2>&1; then uv --version; else echo "uv: not available (venv + pip)"; fi

# Debian packages the tests use: haproxy (a real load balancer in front of two agents).
apt_install() {
  local sudo=""
  [[ "$(id -u)" != 0 ]] && sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "$@" >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$@" >/dev/null; }
}
if ! command -v haproxy >/dev/null 2>&1 && [[ ! -x /usr/sbin/haproxy ]]; then
  echo "haproxy not found: installing it with apt-get"
  apt_install haproxy || { echo "error: could not install haproxy" >&2; exit 1; }
fi
PATH="$PATH:/usr/sbin" haproxy -v | head -1
# etcd for the etcd state backend's tests (Debian's etcd-server; the tests run their own
# etcd on their own loopback addresses).
if ! command -v etcd >/dev/null 2>&1; then
  echo "etcd not found: installing Debian's etcd-server"
  apt_install etcd-server || { echo "error: could not install etcd-server" >&2; exit 1; }
fi
etcd --version | head -1
# sshd for the private-repository-over-ssh test (the test runs its own on 127.0.0.99:2222).
if [[ ! -x /usr/sbin/sshd ]]; then
  echo "sshd not found: installing Debian's openssh-server"
  apt_install openssh-server || { echo "error: could not install openssh-server" >&2; exit 1; }
fi
# The e2e tests fail (rather than skip) when a tool they need is missing.
export E2E_REQUIRE_TOOLS=1

section "build (cargo build --workspace)"
# The end-to-end tests run target/debug/deploy-agent and target/debug/deployctl: build them
# before the tests.
cargo build --workspace

section "test (cargo test --workspace)"
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
cargo test --workspace

section "systemd unit and install.sh"
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/deployctl-install.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
bash scripts/install.sh --from target/debug --root "$STAGE"
for f in usr/local/bin/deploy-agent usr/local/bin/deployctl etc/deploy-agent/config.toml \
         etc/systemd/system/deploy-agent.service; do
  [[ -f "$STAGE/$f" ]] || { echo "error: install.sh did not install /$f" >&2; exit 1; }
done
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify checks that ExecStart exists: point it at the staged binary.
  sed "s#/usr/local/bin/deploy-agent#$STAGE/usr/local/bin/deploy-agent#" \
    "$STAGE/etc/systemd/system/deploy-agent.service" > "$STAGE/deploy-agent.service"
  systemd-analyze verify "$STAGE/deploy-agent.service"
  echo "systemd-analyze verify: deploy-agent.service is valid"
else
  echo "systemd-analyze not found: unit not verified"
fi

section "done"
echo "all tests passed"
