"""Eq. 1–2: full-one filters (dense == fast), SU, AU and MSU against direct formulas."""
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from m2s_lib.subtraction import (
    AdditionUnit,
    FullOneFilter,
    MultiScaleSubtractionUnit,
    SubtractionUnit,
    make_filter_bank,
    validate_kernel_sizes,
)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_dense_and_fast_full_one_filters_are_identical_in_float64(k):
    x = torch.randn(2, 8, 13, 17, dtype=torch.float64)
    dense = FullOneFilter(8, k, impl="dense").double()
    fast = FullOneFilter(8, k, impl="fast").double()
    assert_close(dense.filter(x), fast.filter(x), rtol=1e-12, atol=1e-10)
    # And the literal definition: every output channel is the k×k box sum of the channel sum.
    ref = F.conv2d(x, torch.ones(8, 8, k, k, dtype=torch.float64), padding=k // 2)
    assert_close(fast.filter(x), ref, rtol=1e-12, atol=1e-10)
    assert_close(ref[:, 0], ref[:, 5], rtol=1e-12, atol=1e-10)  # C identical channels
    fast.load_state_dict(dense.state_dict())
    dense.train(False), fast.train(False)
    assert_close(dense(x), fast(x), rtol=1e-12, atol=1e-10)


def test_filter_kernel_is_a_buffer_without_state_dict_key():
    f = FullOneFilter(4, 3, impl="dense")
    assert "kernel" in dict(f.named_buffers())
    assert sorted(f.state_dict()) == [
        "norm.bias", "norm.num_batches_tracked", "norm.running_mean", "norm.running_var", "norm.weight"
    ]
    assert sum(p.numel() for p in f.parameters()) == 8  # BatchNorm's affine parameters only


def test_gaussian_weights_are_fixed_seeded_and_dense_only():
    a, b = FullOneFilter(4, 3, impl="dense", weights="gaussian"), FullOneFilter(4, 3, impl="dense", weights="gaussian")
    assert torch.equal(a.kernel, b.kernel) and not torch.equal(a.kernel, torch.ones_like(a.kernel))
    with pytest.raises(ValueError, match="impl='dense'"):
        FullOneFilter(4, 3, impl="fast", weights="gaussian")


@pytest.mark.parametrize("bad", [(2,), (1, 4), (0,), (3, 3), ()])
def test_bad_kernel_sizes_fail_with_a_clear_message(bad):
    with pytest.raises(ValueError, match="kernel"):
        validate_kernel_sizes(bad)


def test_misspelt_options_fail_early():
    with pytest.raises(ValueError, match="impl='fats' is unknown"):
        FullOneFilter(4, 3, impl="fats")
    with pytest.raises(ValueError, match="weights='one' is unknown"):
        FullOneFilter(4, 3, weights="one")


def _cbr(unit, x):
    return unit.conv(x)


def test_su_and_au_follow_their_formulas():
    a, b = torch.randn(2, 8, 5, 6), torch.randn(2, 8, 10, 12)
    up = F.interpolate(a, size=(10, 12), mode="bilinear", align_corners=False)
    su, au = SubtractionUnit(8).eval(), AdditionUnit(8).eval()
    au.load_state_dict(su.state_dict())
    assert_close(su(a, b), _cbr(su, torch.abs(up - b)))
    assert_close(au(a, b), _cbr(au, up + b))
    assert not torch.allclose(su(a, b), au(a, b))


@pytest.mark.parametrize("sizes", [(1,), (1, 3), (1, 3, 5), (1, 3, 5, 7)])
def test_msu_equals_eq2_written_out(sizes):
    a, b = torch.randn(2, 8, 5, 6, dtype=torch.float64), torch.randn(2, 8, 10, 12, dtype=torch.float64)
    msu = MultiScaleSubtractionUnit(8, sizes).double().eval()
    up = F.interpolate(a, size=(10, 12), mode="bilinear", align_corners=False)
    total = torch.abs(up - b)
    for k in sizes[1:]:
        f = msu.filters[str(k)]
        ones = torch.ones(8, 8, k, k, dtype=torch.float64)
        fa = f.relu(f.norm(F.conv2d(up, ones, padding=k // 2)))
        fb = f.relu(f.norm(F.conv2d(b, ones, padding=k // 2)))
        total = total + torch.abs(fa - fb)
    assert_close(msu(a, b), msu.conv(total))
    assert sorted(msu.scale_terms(up, b)) == list(sizes)


def test_shared_filters_are_registered_once_and_used_by_every_unit():
    bank = make_filter_bank(8, (1, 3, 5))
    units = [MultiScaleSubtractionUnit(8, filters=bank) for _ in range(3)]
    for u in units:
        assert u.filter_bank() is bank
        assert not any("filters" in k for k in u.state_dict())
    with pytest.raises(ValueError, match="lack kernel sizes"):
        MultiScaleSubtractionUnit(8, (1, 3, 5, 7), filters=bank)
