#!/usr/bin/env bash
# Installs what the tests need, builds the workspace, and runs every test: the unit tests and
# the end-to-end tests in tests/, which start real deploy-agent and deployctl binaries on
# 127.0.0.x addresses and deploy small Python apps from temporary git repositories.
#
# Works on a fresh Debian machine with the Rust toolchain, git and python3 (with pip);
# installs uv (pip), moto (a virtualenv), haproxy, etcd, sshd, prometheus and chromium (apt) when missing
# (scripts/lib/tools.sh), and checks formatting and lints before the tests.
# Environment:
#   RUST_TEST_THREADS   parallel tests per test binary (default 4: e2e tests mostly wait)
#   E2E_SKIP_UV=1       do not install uv (the agent then uses python3 -m venv + pip)
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

source scripts/lib/tools.sh

# uv makes the agent's package installs fast; without it the agent uses venv + pip.
if [[ "${E2E_SKIP_UV:-}" != 1 ]]; then
  ensure_uv || echo "warning: could not install uv; the agent will fall back to python3 -m venv + pip"
fi
if command -v uv >/dev/null 2>&1; then uv --version; else echo "uv: not available (venv + pip)"; fi

# Debian packages the tests use (a test whose tool is missing fails, it never skips):
# haproxy (a real load balancer in front of two agents), etcd (the etcd state backend; the
# tests run their own etcd on their own loopback addresses), sshd (the private repository
# over ssh), prometheus (promtool checks /metrics; a real Prometheus server scrapes an agent).
ensure_apt_tool haproxy haproxy
PATH="$PATH:/usr/sbin" haproxy -v | sed -n 1p
ensure_apt_tool etcd etcd-server
etcd --version | sed -n 1p
# moto (PyPI, in its own virtualenv): the S3-compatible server of the S3 state backend's and
# s3:// artifacts' tests; it honours conditional writes, as the backend needs.
ensure_moto
"$(moto_dir)/bin/python" -c "import moto; print('moto', moto.__version__)"
ensure_apt_tool sshd openssh-server
ensure_apt_tool promtool prometheus
promtool --version 2>&1 | sed -n 1p
# chromium: a real browser renders the agent's page (headless, --dump-dom, a screenshot).
ensure_apt_tool chromium chromium
chromium --version 2>/dev/null | sed -n 1p || true

section "format and lints (cargo fmt --check, cargo clippy -D warnings)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

section "build (cargo build --workspace)"
# The end-to-end tests run target/debug/deploy-agent and target/debug/deployctl: build them
# before the tests.
cargo build --workspace

section "test (cargo test --workspace)"
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
# --no-fail-fast: a red run lists every failing test binary, not only the first.
cargo test --workspace --no-fail-fast

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
