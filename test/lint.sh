#!/usr/bin/env bash
# Static analysis of src/: cppcheck, then clang-tidy (checks in src/.clang-tidy)
# with the flags the build uses.  Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}

echo "cppcheck $(cppcheck --version | awk '{print $2}')"
cppcheck --quiet --std=c++17 --language=c++ --enable=warning,style,performance,portability \
    --inline-suppr --error-exitcode=1 -I src --suppress=missingIncludeSystem --suppress=unknownMacro src/

echo "clang-tidy $(clang-tidy --version | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1)"
# One run per file, two at a time (2 cores); any finding makes the run fail (WarningsAsErrors in src/.clang-tidy).
include=$("$PG_CONFIG" --includedir-server)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
printf '%s\n' src/*/*.cpp | xargs -P 2 -I{} clang-tidy --quiet {} -- -std=c++17 -Isrc -isystem "$include" >"$log" 2>&1 ||
    status=1
grep -v "warnings generated\|^Suppressed\|Use -header-filter\|display errors from all" "$log" || true
[ "$status" -eq 0 ] || { echo "static analysis: clang-tidy found something"; exit 1; }
echo "static analysis: no findings"
