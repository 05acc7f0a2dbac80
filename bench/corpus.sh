#!/usr/bin/env bash
# bench/corpus.sh — build the benchmark corpus: real software, as a
# multi-path Nix closure of roughly 430 MB of NAR (7 store paths + 1).
#
# Usage:
#   bench/corpus.sh          build (or reuse) the corpus; print on stdout the
#                            top-level store path (one line)
#   bench/corpus.sh --pairs  same, but print on stdout the two store paths of
#                            the two-version pair (one per line, older first)
#   bench/corpus.sh --list   same, but print every component store path
#
# Everything else (progress, sizes) goes to stderr, so callers can do
#   TOP=$(bench/corpus.sh)
#   read -r OLD NEW < <(bench/corpus.sh --pairs | paste - -)
#
# What it builds (see COMPONENTS below): each component is a Debian package
# (unpacked with dpkg-deb -x, never installed) or an npm tarball, unpacked
# into bench/work/<name>/ and added to the store with `nix-store --add`
# (a content-addressed store path, no build needed). A top-level derivation
# (builder /bin/sh, no substituters) writes a list of, and symlinks to, all
# component paths, so its closure is the whole corpus and
# `nix copy` of the top path copies everything.
#
# The two-version pair is Inkscape 1.2.2 as Debian ships it twice: 1.2.2-2+b1
# (a binNMU rebuild) and 1.2.2-2+deb12u1 (a stable update with a patch),
# ~96 MiB each: libinkscape_base.so (28 MB, rebuilt, so its bytes move
# around) plus ~73 MB of data (3,300 files: extensions, icons, UI, locales)
# of which almost all is byte-identical, but sits at shifted NAR offsets
# because earlier entries changed size. Fixed 256 KiB chunks share ~2% of
# the bytes; a content-defined chunker (avg 256 KiB) shares ~70%
# (bench/chunk-overlap.mjs measures both). That is the "storage of two
# versions of one large program" target in docs/architecture.md.
# Other pairs measured with that script (CDC storage / fixed storage; lower
# is better for CDC): typescript 5.8.2/5.8.3 0.63 (but only 22 MB),
# pyright 1.1.413/414 0.68, git deb12u2/u3 0.73, calibre deb12u9/u10 0.73,
# openjdk-17-jre-headless 17.0.19/17.0.21.1 0.79, libreoffice-core
# deb12u13/u14 0.89 (its 69 MB libmergedlo.so changes throughout),
# postgresql-15 15.18/15.20 0.94, containerd 0.96, @next/swc 15.3.2/15.3.3
# 0.97. Rebuilt native binaries share little even with CDC; unchanged data
# behind a changed file is where CDC wins.
#
# Idempotent: downloads are cached under bench/corpus/ (gitignored, ~90 MB),
# trees are unpacked under bench/work/ (gitignored; removed once added to
# the store), and the store path of each component is remembered in
# bench/work/paths/ and reused while it is still valid in the store. A first
# run takes ~30 s; a rerun with everything present takes under a second.
# Versions are pinned, so the store paths are the same on every machine; if
# the Debian archive drops a pinned version the download fails at once with
# apt's error (update the pin, and expect new store paths).
#
# BENCH_CORPUS=large: the second corpus of issue 19, large native binaries
# and few files (~515 MiB of NAR): LibreOffice's core twice (7.4.7
# deb12u13/u14, the pair: ~115 MiB each, mostly a 69 MB libmergedlo.so that
# changes throughout) and Chromium (~285 MiB, most of it one executable). So that
# speed work is not tuned to the first corpus's thousands of small files.
# Its top path is nixipfs-bench-corpus-large, its GC root
# bench/work/result-large, and the benchmarks write *-large.md results.
# Chromium's pin is a security update: when the archive drops it, update it.
#
# BENCH_SMOKE=1 (bench/lib/mode.mjs): a tiny corpus of the same shape made
# here, no downloads: three small generated trees (the pair shares most of
# its bytes at shifted offsets), under $BENCH_OUT/work (or a temporary
# directory) instead of bench/work.
#
# Requirements: a machine like the dev machines (Debian bookworm, root, Nix
# 2.8 single-user without daemon). Missing tools (nix-bin, npm/curl) are
# installed with apt-get. Network: only Debian's apt mirrors and the npm
# registry.
set -euo pipefail

MODE=top
case "${1:-}" in
  "") ;;
  --pairs) MODE=pairs ;;
  --list) MODE=list ;;
  -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--pairs|--list]" >&2; exit 2 ;;
esac

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$BENCH/corpus          # downloaded .deb / .tgz files
WORK=$BENCH/work             # unpacked trees, remembered store paths
if [[ ${BENCH_SMOKE:-} == 1 ]]; then
  OUT=${BENCH_OUT:-$(mktemp -d -t nixipfs-bench-smoke-XXXXXX)}
  WORK=$OUT/work/corpus CACHE=$OUT/work/corpus/downloads
fi
mkdir -p "$CACHE/debs" "$CACHE/npm" "$WORK/trees" "$WORK/paths"

log() { printf '[corpus] %s\n' "$*" >&2; }
START=$(date +%s)

# One run at a time (two concurrent runs would race on bench/work/).
exec 9>"$WORK/.lock"
flock 9

# ---------------------------------------------------------------- components
# name | kind | sources (space separated)
#   kind deb: sources are apt "package=version" pins, unpacked together
#   kind npm: sources are "package@version" specs (one tarball each); each is
#             unpacked into its own subdirectory named after the package
# The name becomes the store path name ([A-Za-z0-9+._?=-] only).
# Sizes are unpacked (≈ NAR size).
COMPONENTS=(
  # the two-version pair, ~96 MiB each: a large program (C++ binary + data)
  "inkscape-1.2.2-2+b1|deb|inkscape=1.2.2-2+b1"
  "inkscape-1.2.2-2+deb12u1|deb|inkscape=1.2.2-2+deb12u1"
  # one very large shared library, ~115 MB (mostly a single 110 MB .so)
  "libllvm15-15.0.6-4+b1|deb|libllvm15=1:15.0.6-4+b1"
  # the C preprocessor/compiler proper (cc1 etc.), ~34 MB of executables
  "cpp-12-12.2.0-14+deb12u1|deb|cpp-12=12.2.0-14+deb12u1"
  # ICU: a 30 MB data library plus code, ~36 MB
  "libicu72-72.1-3+deb12u1|deb|libicu72=72.1-3+deb12u1"
  # CPython interpreter + standard library: thousands of small files, ~20 MB
  "python3.11-3.11.2-6+deb12u9|deb|python3.11-minimal=3.11.2-6+deb12u9 libpython3.11-minimal=3.11.2-6+deb12u9 libpython3.11-stdlib=3.11.2-6+deb12u9"
  # large JavaScript (text): the TypeScript compiler, ~23 MB
  "typescript-5.9.2|npm|typescript@5.9.2"
)
PAIR=("inkscape-1.2.2-2+b1" "inkscape-1.2.2-2+deb12u1")
TOPNAME=nixipfs-bench-corpus
if [[ ${BENCH_CORPUS:-} == large ]]; then
  COMPONENTS=(
    "libreoffice-core-7.4.7-1+deb12u13|deb|libreoffice-core=4:7.4.7-1+deb12u13"
    "libreoffice-core-7.4.7-1+deb12u14|deb|libreoffice-core=4:7.4.7-1+deb12u14"
    "chromium-156.0.8078.129-1-deb12u1|deb|chromium=156.0.8078.129-1~deb12u1"
  )
  PAIR=("libreoffice-core-7.4.7-1+deb12u13" "libreoffice-core-7.4.7-1+deb12u14")
  TOPNAME=nixipfs-bench-corpus-large
fi
#   kind gen (smoke mode): sources are "SEED:KIB" files of deterministic
#             pseudo-random bytes, each named after its seed
if [[ ${BENCH_SMOKE:-} == 1 ]]; then
  COMPONENTS=(
    "smoke-pair-1|gen|changed-1:64 shared:512"
    "smoke-pair-2|gen|changed-2:80 shared:512"
    "smoke-other|gen|other:300 small:1"
  )
  PAIR=("smoke-pair-1" "smoke-pair-2")
fi

# ------------------------------------------------------------------- tools
need_apt=()
command -v nix-store >/dev/null || need_apt+=(nix-bin)
command -v dpkg-deb >/dev/null || need_apt+=(dpkg)
command -v flock >/dev/null || need_apt+=(util-linux)
command -v npm >/dev/null || command -v curl >/dev/null || need_apt+=(curl)
if ((${#need_apt[@]})); then
  log "installing ${need_apt[*]} with apt-get"
  apt-get install -y "${need_apt[@]}" >&2 \
    || { apt-get update >&2 && apt-get install -y "${need_apt[@]}" >&2; }
fi
# Nix runs single-user as root (no daemon); never substitute, no sandbox
# (the builder is the host's /bin/sh).
NIXOPTS=(--option substituters '' --option sandbox false)

# ---------------------------------------------------------------- download
# apt-get download into a directory of its own, pinned version; the cache
# key is the pin, so a rerun never touches the network.
fetch_deb() { # pin -> prints path of the .deb
  local pin=$1 dir="$CACHE/debs/${1//[:=]/_}"
  if ! compgen -G "$dir/*.deb" >/dev/null; then
    log "downloading deb $pin"
    mkdir -p "$dir.tmp" && rm -f "$dir.tmp"/*
    # Sandbox user root: the cache dir is not readable by _apt otherwise.
    # On a machine whose package lists are missing or stale, update once.
    (cd "$dir.tmp" && apt-get download -q -o APT::Sandbox::User=root "$pin" >&2) \
      || { apt-get update >&2 &&
           (cd "$dir.tmp" && apt-get download -q -o APT::Sandbox::User=root "$pin" >&2); }
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  compgen -G "$dir/*.deb" | head -n1
}

# npm pack (verifies the registry's integrity hash); plain curl of the
# registry tarball if npm is missing.
fetch_npm() { # spec -> prints path of the .tgz
  local spec=$1 f="$CACHE/npm/${1//[\/@]/_}.tgz"
  if [[ ! -s $f ]]; then
    log "downloading npm $spec"
    local tmp; tmp=$(mktemp -d "$CACHE/npm/.tmp.XXXXXX")
    if command -v npm >/dev/null; then
      (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
    else
      local pkg=${spec%@*} ver=${spec##*@}
      curl -fsSL -o "$tmp/p.tgz" \
        "https://registry.npmjs.org/$pkg/-/${pkg##*/}-$ver.tgz"
    fi
    mv "$tmp"/*.tgz "$f" && rm -rf "$tmp"
  fi
  echo "$f"
}

# ------------------------------------------------------ unpack + add to store
# Unpack into bench/work/trees/<name> (atomically, via a .tmp dir), then
# `nix-store --add` it. The resulting store path is remembered in
# bench/work/paths/<name> together with the component spec, and reused if
# the spec is unchanged and the path is still valid.
declare -A STOREPATH
for c in "${COMPONENTS[@]}"; do
  IFS='|' read -r name kind sources <<<"$c"
  memo="$WORK/paths/$name"
  if [[ -s $memo ]] && [[ $(sed -n 2p "$memo") == "$c" ]] \
     && p=$(sed -n 1p "$memo") && nix-store --check-validity "$p" 2>/dev/null; then
    STOREPATH[$name]=$p
    continue
  fi
  tree="$WORK/trees/$name"
  if [[ ! -d $tree ]]; then
    rm -rf "$tree.tmp"; mkdir -p "$tree.tmp"
    for s in $sources; do
      case $kind in
        deb) dpkg-deb -x "$(fetch_deb "$s")" "$tree.tmp" ;;
        npm) sub="$tree.tmp/${s%@*}"; mkdir -p "$sub"
             tar -xzf "$(fetch_npm "$s")" -C "$sub" --strip-components=1 \
               --no-same-owner ;;
        gen) python3 -c 'import random, sys; sys.stdout.buffer.write(random.Random(sys.argv[1]).randbytes(int(sys.argv[2]) * 1024))' \
               "${s%%:*}" "${s##*:}" >"$tree.tmp/${s%%:*}" ;;
        *) echo "unknown kind $kind" >&2; exit 1 ;;
      esac
    done
    # Debian trees carry some dangling/absolute symlinks; they are stored
    # as-is (a NAR stores the link text). Make everything readable so that
    # nix-store --add never trips on a mode-000 file.
    chmod -R u+rwX "$tree.tmp"
    mv "$tree.tmp" "$tree"
  fi
  log "adding $name to the store"
  # The store path name is the basename of the directory.
  p=$(nix-store --add "$tree")
  printf '%s\n%s\n' "$p" "$c" >"$memo"
  STOREPATH[$name]=$p
  # The store holds it now; the downloads in bench/corpus/ are enough to
  # redo it, so free the disk space.
  rm -rf "$tree"
done

# ------------------------------------------------------------ top level
# A derivation whose output holds a file listing the component paths and a
# symlink to each: both make Nix's reference scanner record every component
# as a reference, so the closure of the top path is the whole corpus.
# builtins.storePath gives the strings their store-path context (the paths
# become inputs of the derivation). The out-link bench/work/result is an
# (indirect) GC root, so nix-collect-garbage keeps the whole corpus; delete
# bench/work/ to release it.
expr=$(cat <<'NIX'
{ name, paths }:
derivation {
  inherit name;
  system = builtins.currentSystem;
  builder = "/bin/sh";
  PATH = "/usr/bin:/bin";
  components = map builtins.storePath paths;
  args = [ "-c" ''
    set -e
    mkdir -p $out
    for p in $components; do
      echo $p >> $out/components
      ln -s $p $out/$(basename $p | cut -d- -f2-)
    done
  '' ];
}
NIX
)
list=""
for c in "${COMPONENTS[@]}"; do
  IFS='|' read -r name _ _ <<<"$c"
  list+="\"${STOREPATH[$name]}\" "
done
ROOTLINK=$WORK/result${TOPNAME#nixipfs-bench-corpus}
TOP=$(nix-build --out-link "$ROOTLINK" "${NIXOPTS[@]}" --quiet \
        -E "($expr) { name = \"$TOPNAME\"; paths = [ $list]; }" 2>/dev/null) || {
  # rerun with the build output visible if it failed
  nix-build --out-link "$ROOTLINK" "${NIXOPTS[@]}" -E "($expr) { name = \"$TOPNAME\"; paths = [ $list]; }" >&2
  exit 1
}

# ------------------------------------------------------------ report
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
# du -sb of each store path (apparent size ≈ NAR payload) to stderr.
{
  printf '%-40s %9s  %s\n' component MiB "store path"
  total=0
  for c in "${COMPONENTS[@]}"; do
    IFS='|' read -r name _ _ <<<"$c"
    b=$(du -sb "${STOREPATH[$name]}" | cut -f1); total=$((total + b))
    printf '%-40s %9s  %s\n' "$name" "$(mb "$b")" "${STOREPATH[$name]}"
  done
  printf '%-40s %9s\n' "total (du -sb)" "$(mb "$total")"
  echo "top: $TOP"
  echo "pair: ${STOREPATH[${PAIR[0]}]} ${STOREPATH[${PAIR[1]}]}"
  echo "took $(( $(date +%s) - START )) s"
} | sed 's/^/[corpus] /' >&2

case $MODE in
  top) echo "$TOP" ;;
  pairs) echo "${STOREPATH[${PAIR[0]}]}"; echo "${STOREPATH[${PAIR[1]}]}" ;;
  list) for c in "${COMPONENTS[@]}"; do
          IFS='|' read -r name _ _ <<<"$c"; echo "${STOREPATH[$name]}"; done ;;
esac
