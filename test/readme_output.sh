#!/usr/bin/env bash
# README.md shows real psql output.  Every fenced block there that follows a
# line "<!-- output of sql/NAME.sql -->" must appear verbatim, as one run of
# whole lines, in expected/NAME.out; pg_regress keeps that file equal to
# what the server prints.  Exits non-zero naming the first block that drifted.
#
#   test/readme_output.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
/usr/bin/python3 - <<'PY'
import re
import sys

readme = open("README.md", encoding="utf-8").read()
blocks = re.findall(r"<!-- output of sql/(\w+)\.sql -->\n```[a-z]*\n(.*?)```", readme, re.S)
if not blocks:
    sys.exit("README.md has no checked output blocks")
failed = 0
for name, block in blocks:
    expected = open(f"expected/{name}.out", encoding="utf-8").read()
    if "\n" + block not in "\n" + expected:
        failed += 1
        print(f"README.md block not found in expected/{name}.out:\n{block}")
print(f"{len(blocks) - failed} of {len(blocks)} README output blocks match expected/")
sys.exit(1 if failed else 0)
PY
