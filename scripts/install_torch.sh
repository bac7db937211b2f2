#!/usr/bin/env bash
# Install torch into the virtual environment whose python is $1, before anything else,
# so no other requirement can pull a different (multi-GB CUDA) build.
#   TORCH_SPEC       requirement to install (default torch==2.13.0)
#   TORCH_INDEX_URL  where to take it from; empty: the configured indexes and wheel folders
#                    (on the CI machines, the CPU wheel on local disk)
set -euo pipefail

python="${1:?usage: install_torch.sh VENV_PYTHON}"
spec="${TORCH_SPEC:-torch==2.13.0}"
index_url="${TORCH_INDEX_URL:-}"

if [[ -z "$index_url" ]]; then
    exec "$python" -m pip install --quiet "$spec"
fi

# A CUDA index: a CPU build already in the venv would satisfy "torch==X" and stay, so
# remove it first. Local wheel folders are ignored so the index's build is the one taken.
if [[ "$index_url" == */whl/cu* ]] \
    && "$python" -c 'import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)' 2>/dev/null; then
    echo "replacing the CPU build of torch with a CUDA build"
    "$python" -m pip uninstall --quiet --yes torch
fi
PIP_FIND_LINKS= exec "$python" -m pip install --quiet "$spec" --index-url "$index_url"
