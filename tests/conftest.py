"""Shared fixtures: tiny random models of each architecture, the real models (slow), shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from goldenlayers.models import load_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GOLDENLAYERS_SHARED_DATA", REPO.parent / "shared" / "data"))

TINY_PRESETS = ("tiny-gpt2", "tiny-llama", "tiny-gemma3")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark files beside the repository; tests that need them skip where they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA} (set GOLDENLAYERS_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session", params=TINY_PRESETS)
def tiny_model(request):
    """Each tiny architecture in turn. Tests that edit weights must restore them."""
    return load_model(request.param)


@pytest.fixture(scope="session")
def tiny_gpt2():
    return load_model("tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_llama():
    return load_model("tiny-llama")


@pytest.fixture(scope="session")
def tiny_gemma3():
    return load_model("tiny-gemma3")


@pytest.fixture(scope="session")
def smollm2():
    return load_model("smollm2-135m")


@pytest.fixture
def one_thread():
    """Tiny models run many small ops: one thread avoids contention on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
