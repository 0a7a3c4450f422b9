#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine. Idempotent and quick when
# everything is already there. System packages need root (apt-get); otherwise the exact command
# is printed and the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(openjdk-17-jre-headless maven clickhouse-server clickhouse-client mosquitto
                 mosquitto-clients chromium python3-venv)
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# java/mvn may come from elsewhere (e.g. a JDK in /usr/lib/jvm): accept them
if command -v java >/dev/null; then missing=("${missing[@]/openjdk-17-jre-headless}"); fi
if command -v mvn >/dev/null; then missing=("${missing[@]/maven}"); fi
if python3 -m venv --help >/dev/null 2>&1; then missing=("${missing[@]/python3-venv}"); fi
read -r -a missing <<< "${missing[*]}"
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing system packages; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
stamp=.venv/.ioe-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "installing Python packages into .venv …"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  # compat mode: a .pth with the checkout's root, so a package added later (a new top-level
  # folder) is importable without reinstalling
  .venv/bin/pip install -q -e ".[dev]" --config-settings editable_mode=compat
  touch "$stamp"
fi

if [[ -f dashboards/package.json ]]; then
  if [[ ! -d dashboards/node_modules || dashboards/package.json -nt dashboards/node_modules ]]; then
    echo "installing dashboard JavaScript packages (npm) …"
    (cd dashboards && npm install --no-audit --no-fund --loglevel=error)
    touch dashboards/node_modules
  fi
  if grep -q '"build"' dashboards/package.json; then
    (cd dashboards && npm run --silent build)
  fi
fi
