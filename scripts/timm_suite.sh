#!/usr/bin/env bash
# Run timm's OWN model test suite (tests/test_models.py of the timm sdist matching the installed timm) against the
# litvit models only.
#
#   bash scripts/timm_suite.sh                 # from the repo root, with the environment to test activated
#
# Nothing of timm's test code is kept in this repository: at run time the sdist is downloaded into a temporary
# directory outside the repo (removed on exit), its tests/ are copied out (without the sdist's timm/ sources, so the
# INSTALLED timm is what gets tested), the module-filtered list FEAT_INTER_FILTERS is patched there to include our
# registry modules (litv2, lit, lit_ti), and pytest runs with TORCH_BACKEND=litvit (test_models.py imports that module
# before collecting, which registers our models). A small collection plugin, written to the same temporary directory,
# keeps only the items whose `model_name` parameter is one of our models (a pretrained tag such as `.in1k` allowed),
# so no other timm model can slip in through a substring match.
#
# Environment:
#   PYTHON                  interpreter of the environment to test (default: `python` on PATH)
#   TIMM_SDIST              reuse an already downloaded sdist: the unpacked `timm-X.Y.Z` directory or its .tar.gz
#                           (must match the installed timm version; it is copied, never modified)
#   TIMM_SUITE_MODELS       space-separated model names (default: the 7 litvit models)
#   TIMM_SUITE_PRETRAINED   1: also run test_model_load_pretrained / test_model_features_pretrained, which download the
#                           released weights from GitHub (excluded by default: CI has no network besides PyPI)
#   TIMM_SUITE_COLLECT_ONLY 1: only list the collected tests
#   TIMM_SUITE_KEEP         1: keep the temporary directory (its path is printed)
#   extra arguments are passed to pytest (e.g. `-k forward`, `--durations=0`)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
MODELS=${TIMM_SUITE_MODELS:-"litv2_s litv2_m litv2_b lit_ti lit_s lit_m lit_b"}
MODULES="litv2 lit lit_ti"
start=$(date +%s)

VERSION=$("$PY" -c 'import timm; print(timm.__version__)')
"$PY" -c 'import litvit' || { echo "timm_suite: litvit is not importable by $PY" >&2; exit 2; }
echo "timm_suite: python $("$PY" -c 'import sys; print(sys.executable)'), timm $VERSION, torch $("$PY" -c 'import torch; print(torch.__version__)')"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/timm_suite.XXXXXX")
cleanup() {
    if [ "${TIMM_SUITE_KEEP:-0}" = 1 ]; then echo "timm_suite: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- timm's sdist -----------------------------------------------------------------------------------------------
SRC=""
if [ -n "${TIMM_SDIST:-}" ]; then
    if [ -d "$TIMM_SDIST" ]; then
        SRC=$TIMM_SDIST
    elif [ -f "$TIMM_SDIST" ]; then
        mkdir -p "$WORK/sdist" && tar -xzf "$TIMM_SDIST" -C "$WORK/sdist"
        SRC=$(echo "$WORK"/sdist/timm-*)
    else
        echo "timm_suite: TIMM_SDIST=$TIMM_SDIST does not exist" >&2; exit 2
    fi
    echo "timm_suite: reusing sdist $TIMM_SDIST"
else
    echo "timm_suite: downloading the timm==$VERSION sdist into $WORK"
    "$PY" -m pip download --quiet --no-binary :all: --no-deps --dest "$WORK/dl" "timm==$VERSION"
    mkdir -p "$WORK/sdist"
    tar -xzf "$WORK"/dl/timm-*.tar.gz -C "$WORK/sdist"
    SRC="$WORK/sdist/timm-$VERSION"
fi
if ! grep -q "^Version: $VERSION\$" "$SRC/PKG-INFO" 2>/dev/null; then
    echo "timm_suite: $SRC is not the timm $VERSION sdist (installed timm is $VERSION)" >&2; exit 2
fi

# Only the tests (and the pytest config with the marker list): the sdist's timm/ package must not shadow the install.
SUITE="$WORK/suite"
mkdir -p "$SUITE"
cp -r "$SRC/tests" "$SUITE/tests"
cp "$SRC/pyproject.toml" "$SUITE/pyproject.toml"
rm -rf "$SUITE/tests/__pycache__"

# --- patch the copy: our registry modules in the module-filtered list(s) -----------------------------------------
"$PY" - "$SUITE/tests/test_models.py" $MODULES <<'EOF'
import re, sys
path, modules = sys.argv[1], sys.argv[2:]
src = open(path).read()
# every `NAME = [` list that is used as list_models(module=NAME ...)
names = sorted(set(re.findall(r"module=\s*([A-Z_][A-Z0-9_]*)", src)))
if not names:
    sys.exit("timm_suite: no list_models(module=...) list found in test_models.py; the patch needs updating")
for name in names:
    src, n = re.subn(rf"^({name}\s*=\s*\[)", r"\1 " + "".join(f"'{m}', " for m in modules), src, count=1, flags=re.M)
    if n != 1:
        sys.exit(f"timm_suite: could not patch {name} in test_models.py")
    print(f"timm_suite: patched {name} += {modules}")
open(path, "w").write(src)
EOF

# --- collection plugin: keep only our models ---------------------------------------------------------------------
mkdir -p "$WORK/plugins"
cat > "$WORK/plugins/litvit_timm_select.py" <<'EOF'
import os

MODELS = set(os.environ["TIMM_SUITE_MODELS"].split())
PRETRAINED_TESTS = {"test_model_load_pretrained", "test_model_features_pretrained"}


def _ours(item):
    params = getattr(getattr(item, "callspec", None), "params", {})
    name = params.get("model_name")
    if not isinstance(name, str) or name.split(".", 1)[0] not in MODELS:
        return False
    if item.originalname in PRETRAINED_TESTS and os.environ.get("TIMM_SUITE_PRETRAINED", "0") != "1":
        return False
    return True


def pytest_collection_modifyitems(session, config, items):
    keep = [i for i in items if _ours(i)]
    drop = [i for i in items if not _ours(i)]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


def pytest_report_header(config):
    import timm
    return f"timm {timm.__version__} from {os.path.dirname(timm.__file__)}; models: {' '.join(sorted(MODELS))}"
EOF

export TIMM_SUITE_MODELS="$MODELS"
export TORCH_BACKEND=litvit
export PYTHONPATH="$WORK/plugins${PYTHONPATH:+:$PYTHONPATH}"
unset GITHUB_ACTIONS TORCH_DEVICE || true
PYTEST=("$PY" -m pytest tests/test_models.py -p litvit_timm_select -p no:cacheprovider
        -W ignore::pytest.PytestUnknownMarkWarning)

cd "$SUITE"
# timm must be the installed one, not anything in the suite directory
"$PY" -c 'import timm, os, sys; d = os.path.abspath(timm.__file__); sys.exit(d.startswith(os.getcwd()) and "timm_suite: suite dir shadows timm" or 0)'

echo "timm_suite: collecting"
"${PYTEST[@]}" --collect-only -q "$@" > "$WORK/collected.txt" || { cat "$WORK/collected.txt"; exit 3; }
"$PY" - "$WORK/collected.txt" <<'EOF'
import collections, os, re, sys
models = set(os.environ["TIMM_SUITE_MODELS"].split())
ids = [l.strip() for l in open(sys.argv[1]) if "::" in l]
per_test = collections.OrderedDict()
for nodeid in ids:
    func, _, param = nodeid.split("::", 1)[1].partition("[")
    per_test.setdefault(func, []).append(param.rstrip("]"))
    # sanity: every collected id must name one of our models
    if not any(re.search(rf"(^|\[|-){re.escape(m)}(\.[\w.]+)?(-|\]|$)", nodeid) for m in models):
        sys.exit(f"timm_suite: collected a test outside our models: {nodeid}")
print(f"timm_suite: {len(ids)} tests collected")
for func, params in per_test.items():
    print(f"  {func} ({len(params)}): {' '.join(params)}")
if not ids:
    sys.exit("timm_suite: nothing collected")
EOF
[ "${TIMM_SUITE_COLLECT_ONLY:-0}" = 1 ] && exit 0

echo "timm_suite: running"
rc=0
"${PYTEST[@]}" -rfEs --durations=30 --junitxml="$WORK/junit.xml" "$@" || rc=$?

[ -f "$WORK/junit.xml" ] && "$PY" - "$WORK/junit.xml" <<'EOF'
import collections, sys
import xml.etree.ElementTree as ET
counts = collections.OrderedDict()
for case in ET.parse(sys.argv[1]).iter("testcase"):
    func = case.get("name").split("[")[0]
    status = "passed"
    for child in case:
        if child.tag in ("failure", "error", "skipped"):
            status = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
    counts.setdefault(func, collections.Counter())[status] += 1
total = collections.Counter()
print("timm_suite: results per test function (passed / failed / error / skipped)")
for func, c in counts.items():
    total.update(c)
    print(f"  {func:48s} {c['passed']:3d} {c['failed']:3d} {c['error']:3d} {c['skipped']:3d}")
print(f"timm_suite: TOTAL passed={total['passed']} failed={total['failed']} error={total['error']} "
      f"skipped={total['skipped']}")
EOF
echo "timm_suite: wall time $(( $(date +%s) - start )) s, pytest exit code $rc"
exit $rc
