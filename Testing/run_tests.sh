#!/usr/bin/env bash
# Install what the tests need into the project venv and run the whole suite.
# Exit status: pytest's, except that "no tests collected" (5) is a failure too.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${WEAKSEG_VENV:-$root/.venv}"
start=$SECONDS
bash "$root/WeakSegLib/install.sh" test,crf || exit 1
echo "run_tests.sh: installed in $((SECONDS - start)) s; pytest's last line gives the test time"
cd "$root"
"$venv/bin/python" -m pytest Testing -q -p no:cacheprovider "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "run_tests.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
