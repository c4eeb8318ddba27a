#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install WeakSegLib into it.
#
#   bash WeakSegLib/install.sh [EXTRAS]      EXTRAS default: demo,slicer,crf
#
# The environment is $WEAKSEG_VENV (default: .venv at the repository root). torch is
# installed first and pinned to 2.13.0 so that no requirement can pull a multi-GB CUDA
# build; on a GPU machine install the CUDA torch you want into the venv beforehand.
# The dense-CRF extra compiles pydensecrf2; if no compiler is available WeakSeg falls
# back to its own torch CRF, so a failure there is reported and skipped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${WEAKSEG_VENV:-$root/.venv}"
extras="${1:-demo,slicer,crf}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    "${pip[@]}" "torch==2.13.0"
fi
core_extras="${extras//,crf/}"
core_extras="${core_extras//crf,/}"
[ "$core_extras" = "crf" ] && core_extras=""
"${pip[@]}" -e "$root/WeakSegLib${core_extras:+[$core_extras]}"
if [[ ",$extras," == *",crf,"* ]]; then
    "${pip[@]}" pydensecrf2 || echo "install.sh: pydensecrf2 did not build; WeakSeg uses its torch CRF instead" >&2
fi
echo "install.sh: WeakSeg installed in $venv; to put weakseg on PATH: source $venv/bin/activate"
