#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: install, build, start a
# throwaway cluster with the extension, and run a real psql session
# (test/demo.sql) that grants, denies with retry_after, commits, releases
# and reads quota.usage.  The cluster is stopped and removed at the end.
#
#   test/demo.sh
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/cluster.sh"
quota_setup
quota_start_cluster
say "a psql session (test/demo.sql)"
psql -X --echo-all -v ON_ERROR_STOP=1 -f "$QUOTA_ROOT/test/demo.sql"
