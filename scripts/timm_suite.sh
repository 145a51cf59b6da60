#!/usr/bin/env bash
# Run timm's OWN model test suite (tests/test_models.py of the timm sdist matching the installed timm) against the
# litvit models only.
#
#   bash scripts/timm_suite.sh [pytest args]   # from the repo root, with the environment to test activated
#
# Nothing of timm's test code is kept in this repository. At run time the sdist is downloaded into a temporary
# directory outside the repo (removed on exit); its tests/ are copied out without the sdist's timm/ sources, so the
# INSTALLED timm is what gets tested; the module-filtered lists (`list_models(module=...)`, i.e. FEAT_INTER_FILTERS)
# of that copy get our registry modules (litv2, lit, lit_ti); and pytest runs with TORCH_BACKEND=litvit
# (test_models.py imports that module before collecting, which registers our models). A small collection plugin,
# written to the same temporary directory, keeps only the items whose `model_name` parameter is one of our models
# (a pretrained tag such as `.in1k` allowed): an exact match, so no other timm model can slip in by substring.
#
# Environment:
#   PYTHON                  interpreter of the environment to test (default: `python` on PATH)
#   TIMM_SDIST              reuse an already downloaded sdist: the unpacked `timm-X.Y.Z` directory or its .tar.gz
#                           (must be the installed timm's version; it is copied, never modified)
#   TIMM_SUITE_MODELS       space-separated model names (default: the 7 released LIT / LITv2 models), or `all`:
#                           every model registered by litvit's timm modules
#   TIMM_SUITE_NON_STD      space-separated name patterns appended to the suite's NON_STD_FILTERS (default: "lit_ti*":
#                           LIT-Ti ends in class + patch tokens (NLC), the kind of model timm itself lists there, like
#                           deit / vit, so it runs test_model_default_cfgs_non_std instead of the spatial-output
#                           test_model_default_cfgs / _forward_features; set it to "" to see those refuse it)
#   TIMM_SUITE_PRETRAINED   1: also run test_model_load_pretrained / test_model_features_pretrained, which download
#                           the released weights from GitHub (left out by default: CI has no network besides PyPI)
#   TIMM_SUITE_COLLECT_ONLY 1: only list the selected tests
#   TIMM_SUITE_KEEP         1: keep the temporary directory (its path is printed)
# Extra arguments go to pytest (e.g. `-k fx`, `--durations=0`).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
PY=$(command -v "$PY") || { echo "timm_suite: no python interpreter '${PYTHON:-python}'" >&2; exit 2; }
case "$PY" in /*) ;; *) PY="$PWD/$PY" ;; esac  # the suite runs from another directory
MODULES="litv2 lit lit_ti"
MODELS=${TIMM_SUITE_MODELS:-"litv2_s litv2_m litv2_b lit_ti lit_s lit_m lit_b"}
start=$(date +%s)

VERSION=$("$PY" -c 'import timm; print(timm.__version__)')
REGISTERED=$("$PY" -c 'import sys, timm, litvit; print(" ".join(timm.list_models(module=sys.argv[1:])))' $MODULES) \
    || { echo "timm_suite: litvit is not importable by $PY" >&2; exit 2; }
[ "$MODELS" = all ] && MODELS=$REGISTERED
for m in $REGISTERED; do
    case " $MODELS " in *" $m "*) ;; *) echo "timm_suite: note: $m is registered by litvit but not tested" \
        "(TIMM_SUITE_MODELS=all tests every registered model)";; esac
done
echo "timm_suite: python $("$PY" -c 'import sys; print(sys.executable)'), timm $VERSION," \
     "torch $("$PY" -c 'import torch; print(torch.__version__)')"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/timm_suite.XXXXXX")
cleanup() {
    if [ "${TIMM_SUITE_KEEP:-0}" = 1 ]; then echo "timm_suite: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- timm's sdist ------------------------------------------------------------------------------------------------
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
    if ! "$PY" -m pip download --quiet --no-binary :all: --no-deps --dest "$WORK/dl" "timm==$VERSION" \
            > "$WORK/pip.log" 2>&1; then
        cat "$WORK/pip.log" >&2; echo "timm_suite: pip download of the timm==$VERSION sdist failed" >&2; exit 2
    fi
    mkdir -p "$WORK/sdist"
    tar -xzf "$WORK"/dl/timm-*.tar.gz -C "$WORK/sdist"
    SRC="$WORK/sdist/timm-$VERSION"
fi
if ! grep -q "^Version: $VERSION\$" "$SRC/PKG-INFO" 2>/dev/null || [ ! -f "$SRC/tests/test_models.py" ]; then
    echo "timm_suite: $SRC is not the timm $VERSION sdist with tests/ (installed timm is $VERSION)" >&2; exit 2
fi

# Only the tests and the pytest config (marker list): the sdist's timm/ package must not shadow the installed one.
SUITE="$WORK/suite"
mkdir -p "$SUITE"
cp -r "$SRC/tests" "$SUITE/tests"
cp "$SRC/pyproject.toml" "$SUITE/pyproject.toml"
rm -rf "$SUITE/tests/__pycache__"

# --- patch the copy: our registry modules in every module-filtered list ------------------------------------------
TIMM_SUITE_NON_STD=${TIMM_SUITE_NON_STD-"lit_ti*"} "$PY" - "$SUITE/tests/test_models.py" $MODULES <<'PYEOF'
import os, re, sys

path, modules = sys.argv[1], sys.argv[2:]
src = open(path).read()


def prepend(src, name, entries):
    src, n = re.subn(rf"^({name}\s*=\s*\[)", r"\1 " + "".join(f"'{e}', " for e in entries), src, count=1, flags=re.M)
    if n != 1:
        sys.exit(f"timm_suite: could not patch {name} in test_models.py; the patch needs updating")
    print(f"timm_suite: patched {name} += {entries}")
    return src


names = sorted(set(re.findall(r"module=\s*([A-Z_][A-Z0-9_]*)", src)))  # lists used as list_models(module=NAME)
if not names:
    sys.exit("timm_suite: no list_models(module=...) list found in test_models.py; the patch needs updating")
for name in names:
    src = prepend(src, name, modules)
if os.environ["TIMM_SUITE_NON_STD"].split():
    src = prepend(src, "NON_STD_FILTERS", os.environ["TIMM_SUITE_NON_STD"].split())
open(path, "w").write(src)
PYEOF

# --- collection plugin: keep only our models (written here, outside the repo) ------------------------------------
mkdir -p "$WORK/plugins"
cat > "$WORK/plugins/litvit_timm_select.py" <<'PYEOF'
import collections
import os

MODELS = set(os.environ["TIMM_SUITE_MODELS"].split())
PRETRAINED_TESTS = {"test_model_load_pretrained", "test_model_features_pretrained"}


def _ours(item):
    name = getattr(getattr(item, "callspec", None), "params", {}).get("model_name")
    if not isinstance(name, str) or name.split(".", 1)[0] not in MODELS:
        return False
    return item.originalname not in PRETRAINED_TESTS or os.environ.get("TIMM_SUITE_PRETRAINED", "0") == "1"


def pytest_collection_modifyitems(session, config, items):
    keep = [i for i in items if _ours(i)]
    drop = [i for i in items if not _ours(i)]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


def pytest_collection_finish(session):
    per_test = collections.OrderedDict()
    for item in session.items:
        per_test.setdefault(item.originalname, []).append(item.callspec.id)
    lines = [f"timm_suite: {len(session.items)} tests selected"]
    lines += [f"  {func} ({len(ids)}): {' '.join(ids)}" for func, ids in per_test.items()]
    print("\n" + "\n".join(lines), flush=True)
    if not session.items:
        raise SystemExit("timm_suite: no litvit test collected")


def pytest_report_header(config):
    import litvit
    import timm

    return [
        f"timm {timm.__version__} from {os.path.dirname(timm.__file__)}",
        f"litvit from {os.path.dirname(litvit.__file__)}; models: {' '.join(sorted(MODELS))}",
    ]
PYEOF

export TIMM_SUITE_MODELS="$MODELS"
export TORCH_BACKEND=litvit
export PYTHONPATH="$WORK/plugins${PYTHONPATH:+:$PYTHONPATH}"
unset GITHUB_ACTIONS TORCH_DEVICE || true
PYTEST=("$PY" -m pytest tests/test_models.py -p litvit_timm_select -p no:cacheprovider
        -W ignore::pytest.PytestUnknownMarkWarning)

cd "$SUITE"
"$PY" -c 'import os, sys, timm; sys.exit("timm_suite: the suite dir shadows timm" if os.path.abspath(timm.__file__).startswith(os.getcwd()) else 0)'

if [ "${TIMM_SUITE_COLLECT_ONLY:-0}" = 1 ]; then
    "${PYTEST[@]}" --collect-only -q "$@"
    exit $?
fi

echo "timm_suite: running"
rc=0
"${PYTEST[@]}" -rfEs --durations=30 --junitxml="$WORK/junit.xml" "$@" || rc=$?

if [ -f "$WORK/junit.xml" ]; then
    "$PY" - "$WORK/junit.xml" <<'PYEOF'
import collections, os, re, sys
import xml.etree.ElementTree as ET

models = os.environ["TIMM_SUITE_MODELS"].split()
counts = collections.OrderedDict()
for case in ET.parse(sys.argv[1]).iter("testcase"):
    name = case.get("name")
    # every selected id must name one of our models exactly
    if not any(re.search(rf"[\[-]{re.escape(m)}(\.[\w.]+)?[-\]]", name) for m in models):
        sys.exit(f"timm_suite: ran a test outside our models: {name}")
    status = "passed"
    for child in case:
        if child.tag in ("failure", "error", "skipped"):
            status = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
    counts.setdefault(name.split("[")[0], collections.Counter())[status] += 1
total = collections.Counter()
print(f"timm_suite: results per test function {'':30s} passed failed error skipped")
for func, c in counts.items():
    total.update(c)
    print(f"  {func:60s} {c['passed']:6d} {c['failed']:6d} {c['error']:5d} {c['skipped']:7d}")
print(f"timm_suite: TOTAL passed={total['passed']} failed={total['failed']} error={total['error']} "
      f"skipped={total['skipped']}")
PYEOF
fi
echo "timm_suite: wall time $(( $(date +%s) - start )) s, pytest exit code $rc"
exit $rc
