"""M2SNet / MSNet / FPN: parameter counts, output sizes, feature dict, dense == fast, ablation variants."""
import pytest
import torch
from torch.testing import assert_close

from m2s_lib.mmsm import MMSM, ms_key
from m2s_lib.model import FPNBaseline, M2SNet, MSNet, build_model
from m2s_lib.profiling import count_parameters


@pytest.fixture(scope="module")
def paper_m2snet():
    return M2SNet().eval()


def test_paper_parameter_counts():
    # The paper reports 27.7 M for M2SNet with Res2Net-50; full-one filters add no parameters.
    assert abs(count_parameters(M2SNet()) / 1e6 - 27.69) <= 0.01
    assert abs(count_parameters(MSNet()) / 1e6 - 27.69) <= 0.01


@pytest.mark.parametrize("hw", [(352, 352), (300, 417), (64, 64)])
def test_logits_have_the_input_size(paper_m2snet, hw):
    with torch.no_grad():
        out = paper_m2snet(torch.randn(1, 3, *hw))
    assert out.shape == (1, 1, *hw)
    assert torch.isfinite(out).all()


def test_classes_and_in_channels(small_encoder):
    model = M2SNet(encoder_name=small_encoder, classes=4, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 96, 80)).shape == (2, 4, 96, 80)


def test_forward_features_names_every_intermediate(small_encoder):
    model = M2SNet(encoder_name=small_encoder).eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 128, 128)
        feats = model.forward_features(x)
    expected = [f"E{i}" for i in range(1, 6)]
    expected += [ms_key(1, i) for i in range(1, 6)]
    expected += [ms_key(n, i) for n in range(2, 6) for i in range(6 - n, 0, -1)]
    expected += ["CE^4", "CE^3", "CE^2", "CE^1", "CE^5", "D4", "D3", "D2", "D1", "logits"]
    assert list(feats) == expected
    strides = {1: 4, 2: 4, 3: 8, 4: 16, 5: 32}
    for i, s in strides.items():
        assert feats[f"E{i}"].shape[-1] == 128 // s
        assert feats[ms_key(1, i)].shape[1] == 64
    assert torch.equal(feats["CE^4"], feats[ms_key(2, 4)])  # official wiring: CE^4 = MS_2^4, no conv
    with torch.no_grad():
        assert torch.equal(feats["logits"], model(x))


def test_dense_and_fast_networks_give_the_same_logits():
    fast = M2SNet(msu_impl="fast").double().eval()
    dense = M2SNet(msu_impl="dense").double().eval()
    dense.load_state_dict(fast.state_dict())
    x = torch.randn(1, 3, 96, 96, dtype=torch.float64)
    with torch.no_grad():
        assert_close(dense(x), fast(x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "factory",
    [
        lambda enc: FPNBaseline(encoder_name=enc),
        lambda enc: MSNet(encoder_name=enc),
        lambda enc: M2SNet(encoder_name=enc, unit="au"),
        lambda enc: M2SNet(encoder_name=enc, kernel_sizes=(1,)),
        lambda enc: M2SNet(encoder_name=enc, kernel_sizes=(1, 3)),
        lambda enc: M2SNet(encoder_name=enc, kernel_sizes=(1, 3, 5, 7)),
        lambda enc: M2SNet(encoder_name=enc, filter_weights="gaussian", msu_impl="dense"),
        lambda enc: M2SNet(encoder_name=enc, wiring="paper"),
        lambda enc: M2SNet(encoder_name=enc, share_filters=False),
        lambda enc: M2SNet(encoder_name=enc, max_order=3),
        lambda enc: M2SNet(encoder_name="efficientnet_b0"),
    ],
    ids=["fpn", "msnet", "au", "k1", "k13", "k1357", "gaussian", "paper-wiring", "per-unit-filters", "order3", "effnet"],
)
def test_variants_build_and_train(small_encoder, factory):
    model = factory(small_encoder).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 1, 64, 64)
    out.mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_unit_and_filter_counts_follow_the_options(small_encoder):
    assert len(M2SNet(encoder_name=small_encoder).mmsm.units) == 10
    assert len(M2SNet(encoder_name=small_encoder, max_order=3).mmsm.units) == 7
    assert len(FPNBaseline(encoder_name=small_encoder).mmsm.units) == 0
    shared = M2SNet(encoder_name=small_encoder)
    assert sorted(shared.mmsm.filters) == ["3", "5"]
    per_unit = M2SNet(encoder_name=small_encoder, share_filters=False)
    assert per_unit.mmsm.filters is None and all(sorted(u.filters) == ["3", "5"] for u in per_unit.mmsm.units.values())
    # MSNet and M2SNet differ only by the two shared filters' BatchNorms (2 × 2 × 64 parameters).
    assert count_parameters(shared) - count_parameters(MSNet(encoder_name=small_encoder)) == 256


def test_paper_wiring_adds_the_level_features(small_encoder):
    official = M2SNet(encoder_name=small_encoder)
    paper = M2SNet(encoder_name=small_encoder, wiring="paper")
    assert sorted(paper.mmsm.fuse) == ["CE1", "CE2", "CE3", "CE4"]
    assert sorted(official.mmsm.fuse) == ["CE1", "CE2", "CE3"]
    assert list(paper.mmsm.orders(1)) == [1, 2, 3, 4, 5] and list(official.mmsm.orders(1)) == [2, 3, 4, 5]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(encoder_name="res2net_50"), "is not a timm model"),
        (dict(wiring="oficial"), "wiring='oficial' is unknown"),
        (dict(msu_impl="fats"), "msu_impl='fats' is unknown"),
        (dict(unit="sub"), "unit='sub' is unknown"),
        (dict(kernel_sizes=(1, 4)), "kernel size 4"),
        (dict(filter_weights="gaussian"), "msu_impl='dense'"),
        (dict(encoder_name="vit_tiny_patch16_224"), "strides 2, 4, 8, 16, 32"),
    ],
)
def test_bad_settings_fail_early_with_a_clear_message(kwargs, message):
    with pytest.raises((ValueError, RuntimeError), match=message):
        M2SNet(**kwargs)


def test_official_wiring_needs_units():
    with pytest.raises(ValueError, match="max_order"):
        MMSM(wiring="official", max_order=1)


def test_build_model_by_name(small_encoder):
    assert isinstance(build_model("MSNet", encoder_name=small_encoder), MSNet)
    with pytest.raises(ValueError, match="choose one of"):
        build_model("unet")
