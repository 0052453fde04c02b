#!/usr/bin/env bash
# Test the Django recipes app against a real PostgreSQL with quota installed,
# with Django's own test runner (its test database runs the migrations, so
# the migration that installs the extension is tested too).  On a fresh
# Debian 12 machine this installs what it needs (apt: python3-django,
# python3-psycopg2), builds and installs quota, starts a throwaway cluster
# and stops it after.
#
#   examples/django-recipes/test.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../lib/cluster.sh"
quota_install_packages python3-django python3-psycopg2
example_cluster
cd "$here"
say "python3 manage.py test (Django $(/usr/bin/python3 -c 'import django; print(django.get_version())'))"
# The migrations create the extension, so they run as a superuser (postgres).
PGUSER=postgres /usr/bin/python3 manage.py test --noinput -v 2 recipes
