#!/usr/bin/env bash
# gpu_deps.sh: the Debian packages natgrad's host code builds and runs with (OpenBLAS with OpenMP,
# LAPACKE, zlib, the libraries they load, and make), carried to a GPU machine that reaches no
# package registry (the machines lent here reach nothing) so that bench/gpu_check.sh builds there
# the first time.
#   bash bench/gpu_deps.sh fetch [DIR]
#       where Debian's registry is reachable: downloads the .deb files into DIR (default .gpu-deps,
#       git-ignored, about 14 MB) and writes DIR/SHA256SUMS; carry DIR with the working tree.
#   bash bench/gpu_deps.sh unpack DIR PREFIX
#       checks DIR/SHA256SUMS, unpacks every package under PREFIX (dpkg-deb, or ar + tar where there is
#       no dpkg; GPU_DEPS_NO_DPKG=1 forces the latter) (never /: the packages' files must
#       not replace the machine's own), turns absolute symlinks into links inside PREFIX, then
#       `make deps-check NG_DEPS_PREFIX=PREFIX` builds against PREFIX (bench/gpu_check.sh does this by
#       itself when the machine's own packages are missing and DIR is there).
#   bash bench/gpu_deps.sh ensure DIR PREFIX
#       what bench/gpu_check.sh runs first: `make deps-check` with the machine's own packages; if
#       that fails (or make is missing), unpack DIR under PREFIX and check again with
#       NG_DEPS_PREFIX=PREFIX. Prints the shell lines to use for the build (export NG_DEPS_PREFIX=...,
#       and PATH when make came from DIR; nothing when the machine's packages work) on stdout, the
#       checks' output on stderr. GPU_DEPS_SKIP_SYSTEM=1 skips the first check (tests);
#       GPU_DEPS_BUILD=B puts the probe in B (default build).
# Exit status: 0 done, 1 failed (the message says what), 2 usage.
set -u
cd "$(dirname "$0")/.." || exit 1
# the build's (Makefile DEB_PACKAGES, without MPI and gnuplot, which the GPU check does not need)
# and what they load (liblapacke: libtmglib3; libopenblas0: libgfortran5, which loads libquadmath0)
PACKAGES="libopenblas0-openmp libopenblas-openmp-dev libopenblas-dev liblapacke liblapacke-dev libtmglib3
libgfortran5 libquadmath0 zlib1g zlib1g-dev make"

usage() {
  echo "usage: bash bench/gpu_deps.sh fetch [DIR] | unpack DIR PREFIX | ensure DIR PREFIX   (fetch's DIR default .gpu-deps)" >&2
  exit 2
}
die() { echo "gpu_deps: $*" >&2; exit 1; }

fetch() {
  local dir=$1 p n
  command -v apt-get >/dev/null || die "apt-get not found: fetch needs a Debian machine with its registry (the packages are Debian's)"
  mkdir -p "$dir" || die "cannot create $dir"
  rm -f "$dir"/*.deb "$dir/SHA256SUMS"
  # apt-get download needs the package lists: on a fresh machine they may be empty
  # shellcheck disable=SC2086
  if ! (cd "$dir" && apt-get download $PACKAGES) >"$dir/fetch.log" 2>&1; then
    if [ "$(id -u)" = 0 ]; then apt-get update -qq >>"$dir/fetch.log" 2>&1 || true; fi
    # shellcheck disable=SC2086
    (cd "$dir" && apt-get download $PACKAGES) >>"$dir/fetch.log" 2>&1 ||
      die "apt-get download failed (no registry here, or not root for 'apt-get update'?); see $dir/fetch.log"
  fi
  for p in $PACKAGES; do
    ls "$dir/${p}_"*.deb >/dev/null 2>&1 || die "package $p is missing from $dir after the download; see $dir/fetch.log"
  done
  (cd "$dir" && sha256sum ./*.deb > SHA256SUMS) || die "cannot write $dir/SHA256SUMS"
  n=$(ls "$dir"/*.deb | wc -l)
  echo "gpu_deps: $n packages ($(du -sh "$dir" | cut -f1)) in $dir; carry it to the GPU machine (device tool: carry [\"$dir\"])"
}

unpack() {
  local dir=$1 prefix=$2 f l t p x
  [ -d "$dir" ] || die "$dir: no such folder (run 'bash bench/gpu_deps.sh fetch $dir' where Debian's registry is reachable)"
  [ -f "$dir/SHA256SUMS" ] || die "$dir/SHA256SUMS is missing: fetch again"
  case $prefix in ""|/) die "PREFIX '$prefix': refusing to unpack over the machine's root (use a folder of its own, e.g. /tmp/natgrad-deps)" ;; esac
  # dpkg-deb where there is one, else binutils' ar and tar (a .deb is an ar archive holding data.tar.xz)
  if command -v dpkg-deb >/dev/null && [ "${GPU_DEPS_NO_DPKG:-0}" != 1 ]; then x=dpkg
  elif command -v ar >/dev/null && command -v tar >/dev/null; then x=ar
  else die "neither dpkg-deb nor ar + tar found: cannot unpack the .deb files"; fi
  for p in $PACKAGES; do
    ls "$dir/${p}_"*.deb >/dev/null 2>&1 || die "$dir has no package $p: fetch again"
  done
  (cd "$dir" && sha256sum --quiet -c SHA256SUMS) >/dev/null 2>&1 || die "$dir: a package does not match SHA256SUMS (truncated or corrupt copy?): fetch again"
  mkdir -p "$prefix" || die "cannot create $prefix"
  for f in "$dir"/*.deb; do
    if [ $x = dpkg ]; then
      dpkg-deb -x "$f" "$prefix" 2>/dev/null || die "$f: dpkg-deb -x failed (corrupt package?)"
    else
      ar p "$f" data.tar.xz | tar xJf - -C "$prefix" 2>/dev/null || die "$f: ar p $f data.tar.xz | tar xJ failed (corrupt package, or tar without xz?)"
    fi
  done
  # absolute links (zlib1g-dev's libz.so -> /lib/...) would point at the machine's files
  while IFS= read -r l; do
    t=$(readlink "$l")
    case $t in /*) ln -sfn "$prefix$t" "$l" ;; esac
  done < <(find "$prefix" -type l)
  echo "gpu_deps: unpacked $(ls "$dir"/*.deb | wc -l) packages under $prefix; build with: make NG_DEPS_PREFIX=$prefix ..."
}

ensure() {
  local dir=$1 prefix=$2 b=${GPU_DEPS_BUILD:-build} mk
  if [ "${GPU_DEPS_SKIP_SYSTEM:-0}" != 1 ] && command -v make >/dev/null && make -s deps-check BUILD="$b" >&2; then
    return 0
  fi
  echo "gpu_deps: this machine's own packages do not build natgrad's host code${GPU_DEPS_SKIP_SYSTEM:+ (or GPU_DEPS_SKIP_SYSTEM=1)}: trying the carried packages in $dir" >&2
  [ -d "$dir" ] || die "no carried packages: $dir is missing. Where Debian's registry is reachable run 'bash bench/gpu_deps.sh fetch $dir' and carry $dir to this machine (or install: make deps)"
  unpack "$dir" "$prefix" >&2
  mk=make
  command -v make >/dev/null || mk=$prefix/usr/bin/make
  "$mk" -s deps-check BUILD="$b" NG_DEPS_PREFIX="$prefix" >&2 ||
    die "the carried packages unpacked under $prefix do not build the probe either (see above)"
  echo "export NG_DEPS_PREFIX=$prefix"
  [ "$mk" = make ] || echo "export PATH=$prefix/usr/bin:\$PATH"
}

case ${1:-} in
  fetch) [ $# -le 2 ] || usage; fetch "${2:-.gpu-deps}" ;;
  unpack) [ $# = 3 ] || usage; unpack "$2" "$3" ;;
  ensure) [ $# = 3 ] || usage; ensure "$2" "$3" ;;
  *) usage ;;
esac
