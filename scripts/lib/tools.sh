# Installs the tools scripts/test.sh and scripts/bench.sh need on a fresh Debian machine.
# Sourced, not run: `source scripts/lib/tools.sh`, then call the functions below.

# apt-get install PACKAGE... quietly (as root, or with sudo -n), updating the package lists
# once when the first try finds nothing.
apt_install() {
  local sudo=""
  [[ "$(id -u)" != 0 ]] && sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "$@" >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$@" >/dev/null; }
}

# ensure_apt_tool TOOL PACKAGE: installs Debian's PACKAGE when TOOL is not on PATH (nor in
# /usr/sbin, where Debian puts daemons); fails when it cannot.
ensure_apt_tool() {
  local tool="$1" package="$2"
  if command -v "$tool" >/dev/null 2>&1 || [[ -x "/usr/sbin/$tool" ]]; then
    return 0
  fi
  echo "$tool not found: installing Debian's $package with apt-get"
  apt_install "$package" || { echo "error: could not install $package" >&2; return 1; }
}

# ensure_uv: uv on PATH, installed with pip when missing (pip may put it in a scripts
# directory that is not on PATH: pyenv shims, --user). Fails when it cannot.
ensure_uv() {
  command -v uv >/dev/null 2>&1 && return 0
  echo "uv not found: installing it with pip"
  python3 -m pip install --quiet --disable-pip-version-check uv \
    || python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages uv \
    || { echo "error: could not install uv with pip" >&2; return 1; }
  local dir
  for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
             "$(python3 -m site --user-base 2>/dev/null)/bin"; do
    if [[ -x "$dir/uv" ]] && ! command -v uv >/dev/null 2>&1; then
      export PATH="$dir:$PATH"
    fi
  done
  command -v pyenv >/dev/null 2>&1 && pyenv rehash 2>/dev/null || true
  command -v uv >/dev/null 2>&1 || { echo "error: uv installed but not on PATH" >&2; return 1; }
}

# The S3-compatible server the S3 tests run (the state backend and s3:// artifacts): moto's
# standalone server, the one checked to honour conditional writes (If-Match / If-None-Match)
# under concurrent writers. Installed into its own virtualenv under the user's cache
# directory, linked as ~/.cache/deployctl-tests/moto_server, where the tests find it (or at
# $DEPLOYCTL_MOTO_SERVER). Fails when it cannot.
MOTO_VERSION="5.2.6"
moto_dir() { echo "${XDG_CACHE_HOME:-$HOME/.cache}/deployctl-tests/moto-$MOTO_VERSION"; }
ensure_moto() {
  local dir; dir="$(moto_dir)"
  if [[ ! -x "$dir/bin/moto_server" ]]; then install_moto "$dir" || return 1; fi
  ln -sfn "$dir/bin/moto_server" "$(dirname "$dir")/moto_server"
}
install_moto() {
  local dir="$1"
  echo "moto_server not found: installing moto[server]==$MOTO_VERSION into $dir"
  rm -rf "$dir"
  if command -v uv >/dev/null 2>&1; then
    uv venv --quiet "$dir" && uv pip install --quiet --python "$dir/bin/python" "moto[server]==$MOTO_VERSION"
  else
    python3 -m venv "$dir" && "$dir/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi || { echo "error: could not install moto[server]==$MOTO_VERSION" >&2; rm -rf "$dir"; return 1; }
  [[ -x "$dir/bin/moto_server" ]] || { echo "error: moto installed but $dir/bin/moto_server is missing" >&2; return 1; }
}
