"""Shared test settings: headless plotting, capped threads, deterministic CPU runs."""
import os
import sys
from pathlib import Path

# tests/ on sys.path: test modules (imported with --import-mode=importlib) share helper modules such as
# hostile_support.py
sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def small_encoder() -> str:
    """A light timm encoder with the five levels M2SNet needs, for fast tests (the paper's is res2net50d)."""
    return "resnet18d"
