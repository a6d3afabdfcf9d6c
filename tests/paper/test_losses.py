"""Eq. 4–6: structure loss against a per-image re-implementation, the authors' BCE slip, LossNet."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from m2s_lib.losses import LossNet, M2SNetLoss, boundary_weight, structure_loss


def _disk_masks(n=3, size=40):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = [((yy - 10 - 5 * k) ** 2 + (xx - 20) ** 2 < (6 + 3 * k) ** 2).float() for k in range(n)]
    return torch.stack(masks)[:, None]


def structure_loss_per_image(logits, mask):
    """Direct transcription of the weighted BCE + weighted IoU, one image and one pixel at a time."""
    total = 0.0
    n, _, h, w = logits.shape
    for b in range(n):
        z, g = logits[b, 0].double(), mask[b, 0].double()
        # w = 1 + 5 |mean of the 31×31 window (zero padded, divided by 961) − g|
        padded = F.pad(g, (15, 15, 15, 15))
        num = den = inter = union = 0.0
        for y in range(h):
            for x in range(w):
                local = padded[y : y + 31, x : x + 31].sum() / 961
                wt = 1 + 5 * abs(float(local) - float(g[y, x]))
                p = 1 / (1 + math.exp(-float(z[y, x])))
                bce = -(float(g[y, x]) * math.log(p) + (1 - float(g[y, x])) * math.log(1 - p))
                num += wt * bce
                den += wt
                inter += wt * p * float(g[y, x])
                union += wt * (p + float(g[y, x]))
        total += num / den + 1 - (inter + 1) / (union - inter + 1)
    return total / n


def test_structure_loss_matches_the_per_image_definition():
    masks = _disk_masks(2, 24)
    logits = torch.randn(2, 1, 24, 24) * 2
    assert structure_loss(logits, masks).item() == pytest.approx(structure_loss_per_image(logits, masks), rel=1e-5)


def test_boundary_weight_is_one_far_from_edges_and_largest_on_them():
    w = boundary_weight(_disk_masks(1, 80))
    assert w.min().item() == pytest.approx(1.0)
    assert w[0, 0, -1, -1].item() == pytest.approx(1.0)  # far from the disk
    assert w.max().item() > 2.5


def test_authors_reduce_slip_turns_weighted_bce_into_plain_bce():
    masks, logits = _disk_masks(3, 32), torch.randn(3, 1, 32, 32)
    slip = structure_loss(logits, masks, reproduce_authors_bce_slip=True)
    correct = structure_loss(logits, masks)
    prob, wt = torch.sigmoid(logits), boundary_weight(masks)
    inter = (prob * masks * wt).sum((2, 3))
    union = ((prob + masks) * wt).sum((2, 3))
    wiou = (1 - (inter + 1) / (union - inter + 1)).mean()
    assert_close(slip, F.binary_cross_entropy_with_logits(logits, masks) + wiou)
    assert not torch.isclose(slip, correct)


def test_multiclass_structure_loss_rewards_the_right_classes():
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, 8:16] = 1
    target[:, 16:24] = 2
    target[:, 24:] = 3
    good = F.one_hot(target, 4).permute(0, 3, 1, 2).float() * 20 - 10
    bad = torch.roll(good, shifts=1, dims=1)
    assert structure_loss(good, target) < 0.05 < structure_loss(bad, target)
    assert structure_loss(good, target).shape == ()


@pytest.fixture(scope="module")
def lossnet():
    return LossNet(weights=None, input_size=64)


def test_lossnet_is_zero_for_identical_inputs_and_positive_otherwise(lossnet):
    masks = _disk_masks(2, 48)
    assert lossnet(masks, masks).item() == 0.0
    assert lossnet(torch.roll(masks, 4, dims=-1), masks).item() > 0
    assert len(lossnet.features(masks)) == 4


def test_lossnet_vgg_stays_frozen(lossnet):
    before = {k: v.clone() for k, v in lossnet.state_dict().items()}
    pred = torch.rand(2, 1, 48, 48, requires_grad=True)
    lossnet.train()
    assert not any(m.training for m in lossnet.blocks.modules())
    lossnet(pred, _disk_masks(2, 48)).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in lossnet.parameters())
    assert all(torch.equal(before[k], v) for k, v in lossnet.state_dict().items())


def test_m2snet_loss_weighting_and_skipping():
    masks, logits = _disk_masks(2, 48), torch.randn(2, 1, 48, 48)
    parts = M2SNetLoss(lossnet_weight=0.1, lossnet_weights=None, lossnet_input_size=64)(logits, masks)
    assert_close(parts["loss"], parts["structure"] + 0.1 * parts["lossnet"])
    assert parts["lossnet"] > 0
    shared = M2SNetLoss(lossnet_weight=1.0, lossnet=LossNet(weights=None, input_size=64))
    assert_close(shared(logits, masks)["loss"], shared.lossnet(torch.sigmoid(logits), masks) + parts["structure"])
    plain = M2SNetLoss(lossnet_weight=0)
    assert plain.lossnet is None
    assert_close(plain(logits, masks)["loss"], structure_loss(logits, masks))
    # Table 10's "L_f alone" (structure_weight 0) and any other weighting of the structure term
    alone = M2SNetLoss(lossnet_weight=0.1, lossnet=shared.lossnet, structure_weight=0.0)(logits, masks)
    assert torch.equal(alone["loss"], 0.1 * alone["lossnet"]) and alone["structure"] > 0
    double = M2SNetLoss(lossnet_weight=0.1, lossnet=shared.lossnet, structure_weight=2.0)(logits, masks)
    assert_close(double["loss"], 2 * parts["structure"] + 0.1 * double["lossnet"])


def test_lossnet_weights_from_a_torchvision_vgg16_file(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["D"])
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a full VGG-16 file also holds the (unused) classifier
    torch.save(state, tmp_path / "vgg16.pth")
    lossnet = LossNet(weights=tmp_path / "vgg16.pth")
    assert torch.equal(lossnet.blocks[3][1].weight, features[17].weight)  # conv4_1 = features[17], after a pool
