from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The team's offline copies of real data sets (skip where they are absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no shared data at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)


def random_model(preset: str, meta: dict, overrides=(), seed: int = 0, scale: float = 0.3):
    """(model in eval mode, config, meta): a small untrained model of `preset` with
    `overrides` whose weights are random (not the zero-initialised output layer), so its
    conditionals are far from uniform and differ between positions."""
    from anyorder.build import build_model
    from anyorder.config import load_config
    config = load_config(preset, list(overrides))
    torch.manual_seed(seed)
    model = build_model(config, meta)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval(), config, meta


BYTE_D = 8
BYTES_META = {"kind": "text", "dim": BYTE_D, "num_classes": 256, "source": "file", "vocabulary": "bytes",
              "seq_len": BYTE_D}


def byte_model_of(meta: dict = BYTES_META, net: str = "transformer", seed: int = 0, extra=()):
    """A tiny random text model (node network, or path network with net="path-transformer")."""
    overrides = [f"data.seq_len={meta['dim']}", "net.width=32", "net.depth=1", "net.heads=2", f"net.kind={net}"]
    return random_model("text-bytes-cpu", meta, overrides + list(extra), seed)


@pytest.fixture(scope="module")
def byte_model():
    return byte_model_of()


@pytest.fixture(scope="module")
def path_model():
    return byte_model_of(net="path-transformer")
