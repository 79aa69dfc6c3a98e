#!/usr/bin/env bash
# Sets up, then runs the fast tests (tiny random models, bundled data, shared data where present)
# and then the slow ones that load the real packaged models. Any non-zero pytest exit fails,
# including 5 (no tests collected).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export GOLDENLAYERS_PROGRESS=0
python -m pytest
python -m pytest -m slow
