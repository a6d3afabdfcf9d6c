"""Encoders, pretrained-weight resolution and the authors' checkpoint format."""
import os
import subprocess
import sys
from collections import OrderedDict

import pytest
import timm
import torch

from m2s_lib.backbones import CheckpointMismatchError, create_encoder, load_official_checkpoint
from m2s_lib.model import M2SNet, MSNet

# The authors' M2SNet module names (model/miccai_msnet.py) as (name, in_channels, out_channels) of each
# Sequential(Conv2d 3×3, BatchNorm2d, ReLU), written out independently of the library's key map.
AUTHORS_CBR = [
    ("x5_dem_1", 2048, 64), ("x4_dem_1", 1024, 64), ("x3_dem_1", 512, 64), ("x2_dem_1", 256, 64),
    ("x5_x4", 64, 64), ("x4_x3", 64, 64), ("x3_x2", 64, 64), ("x2_x1", 64, 64),
    ("x5_x4_x3", 64, 64), ("x4_x3_x2", 64, 64), ("x3_x2_x1", 64, 64),
    ("x5_x4_x3_x2", 64, 64), ("x4_x3_x2_x1", 64, 64), ("x5_dem_4", 64, 64), ("x5_x4_x3_x2_x1", 64, 64),
    ("level3", 64, 64), ("level2", 64, 64), ("level1", 64, 64), ("x5_dem_5", 2048, 64),
    ("output4", 64, 64), ("output3", 64, 64), ("output2", 64, 64),
]  # fmt: skip


def _bn(prefix, c, gen):
    return {
        f"{prefix}.weight": torch.rand(c, generator=gen) + 0.5,
        f"{prefix}.bias": torch.randn(c, generator=gen),
        f"{prefix}.running_mean": torch.randn(c, generator=gen),
        f"{prefix}.running_var": torch.rand(c, generator=gen) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(7),
    }


def authors_state_dict(with_filters=True, seed=0):
    """A random state dict with exactly the keys and shapes of the authors' released checkpoints."""
    gen = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    resnet = timm.create_model("res2net50d")  # the authors' res2net50_v1b_26w_4s, fc included
    for k, v in resnet.state_dict().items():
        state[f"resnet.{k}"] = torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone()
    for name, cin, cout in AUTHORS_CBR:
        state[f"{name}.0.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * 0.01
        state[f"{name}.0.bias"] = torch.randn(cout, generator=gen)
        state.update(_bn(f"{name}.1", cout, gen))
    if with_filters:  # CNN1 modules: only their BatchNorm has keys (the all-ones kernels were never registered)
        state.update(_bn("conv_3.norm", 64, gen))
        state.update(_bn("conv_5.norm", 64, gen))
    state["output1.0.weight"] = torch.randn(1, 64, 3, 3, generator=gen)
    state["output1.0.bias"] = torch.randn(1, generator=gen)
    return state


@pytest.fixture(scope="module")
def official_state():
    return authors_state_dict()


def test_authors_m2snet_checkpoint_loads_strictly(official_state, tmp_path):
    path = tmp_path / "M2SNet.pth"
    torch.save(official_state, path)
    model = load_official_checkpoint(M2SNet(), path)
    own = model.state_dict()
    assert torch.equal(own["encoder.conv1.0.weight"], official_state["resnet.conv1.0.weight"])
    assert torch.equal(own["mmsm.units.MS5_1.conv.1.running_var"], official_state["x5_x4_x3_x2_x1.1.running_var"])
    assert torch.equal(own["mmsm.filters.3.norm.weight"], official_state["conv_3.norm.weight"])
    assert torch.equal(own["mmsm.top_input.0.weight"], official_state["x5_dem_4.0.weight"])
    assert torch.equal(own["mmsm.fuse.CE1.0.weight"], official_state["level1.0.weight"])
    assert torch.equal(own["decoder.head.0.bias"], official_state["output1.0.bias"])
    assert torch.equal(own["reduce.E4.0.weight"], official_state["x4_dem_1.0.weight"])
    used = len(official_state) - 2  # resnet.fc.weight / resnet.fc.bias are the only unused keys
    assert len(own) == used


def test_authors_msnet_checkpoint_loads_into_msnet():
    load_official_checkpoint(MSNet(), authors_state_dict(with_filters=False))


def test_missing_key_is_named(official_state):
    broken = OrderedDict(official_state)
    del broken["x4_x3.1.running_mean"]
    with pytest.raises(CheckpointMismatchError, match=r"missing .*mmsm\.units\.MS2_3\.conv\.1\.running_mean"):
        load_official_checkpoint(M2SNet(), broken)


def test_extra_key_is_named(official_state):
    broken = OrderedDict(official_state)
    broken["x6_dem_1.0.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected .*x6_dem_1\.0\.weight"):
        load_official_checkpoint(M2SNet(), broken)


def test_m2snet_checkpoint_into_msnet_fails_naming_the_filters(official_state):
    with pytest.raises(CheckpointMismatchError, match="conv_3.norm.weight"):
        load_official_checkpoint(MSNet(), official_state)


def test_encoder_weights_from_a_file(tmp_path, small_encoder):
    full = timm.create_model(small_encoder)
    torch.save({"state_dict": full.state_dict()}, tmp_path / "enc.pth")
    encoder = create_encoder(small_encoder, tmp_path / "enc.pth")
    assert torch.equal(encoder.state_dict()["conv1.0.weight"], full.state_dict()["conv1.0.weight"])
    with pytest.raises(CheckpointMismatchError, match="do not fit"):
        create_encoder("resnet34d", tmp_path / "enc.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_encoder(small_encoder, tmp_path / "nothing.pth")


def test_imagenet_weights_offline_give_one_clear_error(tmp_path):
    code = (
        "from m2s_lib.backbones import create_encoder\n"
        "try:\n"
        "    create_encoder('resnet18d', 'imagenet')\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, '|', e)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path), TORCH_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120).stdout
    assert out.startswith("EncoderWeightsError |"), out
    assert "encoder_weights='/path/to/weights.pth'" in out and "encoder_weights=None" in out
    assert "not cached" in out and "offline" in out, "the probe must answer before timm's downloader retries"
