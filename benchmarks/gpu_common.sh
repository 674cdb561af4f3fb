# Sourced by the benchmarks/gpu_*.sh scripts: option errors and the set-up checks they all make first.
# Each script sets NAME (its file name) before sourcing this file.

# `-h|--help` prints LINES (a sed range of the script's header); anything else is an unknown option.
help_or_unknown_option() {  # OPTION LINES
  case "$1" in
    -h|--help) sed -n "$2p" "$0"; exit 0;;
    *) echo "$NAME: unknown option $1 (see --help)" >&2; exit 2;;
  esac
}

# OUTDIR is set and the script runs from the repository root; REPO, OUTDIR and WORK become absolute.
check_setup() {
  [ -n "$OUTDIR" ] || { echo "$NAME: set OUT or pass --out DIR" >&2; exit 2; }
  [ -f pyproject.toml ] && [ -d models/avsyncd ] || { echo "$NAME: run from the asva-bench repository root" >&2; exit 2; }
  REPO=$(pwd)
  mkdir -p "$OUTDIR" "$WORK"
  OUTDIR=$(cd "$OUTDIR" && pwd); WORK=$(cd "$WORK" && pwd)
}

# Install asva-bench from a copy of the checkout into $SITE, unless IMPORTS (a python import list) work.
install_checkout() {  # IMPORTS
  if ! "$PY" -c "import $1" 2>/dev/null; then
    stamp "installing asva-bench from the checkout into $SITE"
    rm -rf "$WORK/src"; mkdir -p "$WORK/src"
    (cd "$REPO" && tar --exclude=./.git --exclude=./.whl --exclude=./.gl -cf - .) | tar -xf - -C "$WORK/src"
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WORK/src"
  fi
}
