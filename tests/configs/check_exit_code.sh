#!/usr/bin/env bash
# Runs `PROGRAM --config CONFIG` and checks that it exits with EXPECTED_CODE
# and (optionally) that its stderr contains PATTERN (a fixed string).
#
#   check_exit_code.sh PROGRAM EXPECTED_CODE CONFIG [PATTERN]
#
# Exits 0 on success, 1 on a mismatch (printing what it saw), and 77 (CTest
# SKIP_RETURN_CODE) when PROGRAM does not exist or is not executable, so the
# config_exit_code_* tests show as skipped until the program is built.
set -u
if [[ $# -lt 3 || $# -gt 4 ]]; then
  echo "usage: $0 PROGRAM EXPECTED_CODE CONFIG [PATTERN]" >&2
  exit 1
fi
program=$1 expected=$2 config=$3 pattern=${4-}
if [[ ! -x $program ]]; then
  echo "skip: $program is not built" >&2
  exit 77
fi
stderr_file=$(mktemp)
trap 'rm -f "$stderr_file"' EXIT
"$program" --config "$config" >/dev/null 2>"$stderr_file"
code=$?
status=0
if [[ $code -ne $expected ]]; then
  echo "FAIL: $program --config $config exited $code, expected $expected" >&2
  status=1
fi
if [[ -n $pattern ]] && ! grep -qF -- "$pattern" "$stderr_file"; then
  echo "FAIL: stderr of $program --config $config does not contain '$pattern'" >&2
  status=1
fi
if [[ $status -ne 0 ]]; then
  echo "---- stderr ----" >&2
  cat "$stderr_file" >&2
fi
exit $status
