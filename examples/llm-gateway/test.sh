#!/usr/bin/env bash
# Test the LLM gateway against a real PostgreSQL with quota installed.
# On a fresh Debian 12 machine this installs what it needs (apt, npm),
# builds and installs quota, starts a throwaway cluster and stops it after.
#
#   examples/llm-gateway/test.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/cluster.sh"
example_node_tests "$here" gateway_example gateway_app
