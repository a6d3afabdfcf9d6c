"""The engine's parts seen from outside: the Trainer is ``train_step`` in a loop, OCT validation reports the same
statistic as ``m2s evaluate``, and the notebooks' shared helpers (BatchNorm randomiser, checkpoint-or-train)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from m2s_lib.config import load_config
from m2s_lib.constants import GOALS_CLASS_VALUES
from m2s_lib.data.synthetic import generate
from m2s_lib.engine.evaluate import evaluate_folder
from m2s_lib.engine.step import train_step
from m2s_lib.engine.trainer import Trainer
from m2s_lib.teaching.notebook_utils import load_or_train, randomise_batchnorms


def tiny(*extra):
    return load_config(profile="tiny", overrides=[
        "data.size=64", "data.test_size=64", "data.train_sizes=[48,64]", "optim.batch_size=4", "optim.epochs=1",
        "model.channels=16", "run.progress=false", "data.num_workers=0", "loss.lossnet_weight=0", *extra,
    ])  # fmt: skip


@pytest.fixture(scope="module")
def polyp_root(tmp_path_factory):
    return generate("polyp", tmp_path_factory.mktemp("data") / "polyp", n=12, seed=0, size=64, n_test=2,
                    progress=False, workers=1)  # fmt: skip


def test_trainer_is_train_step_in_a_loop(polyp_root):
    """Same seed, same batches: a hand loop of ``train_step`` ends with the Trainer's weights, bit for bit."""
    settings = (f"data.root={polyp_root}", "run.max_steps_per_epoch=3", "optim.schedule_unit=step",
                "optim.grad_clip=1.0")
    reference = Trainer(tiny(*settings), None, log=lambda m: None)
    reference.fit()
    hand = Trainer(tiny(*settings), None, log=lambda m: None)  # same seed: same initial weights
    hand.model.train()
    for step, batch in enumerate(hand.train_loader(0)):
        if step == hand.steps_per_epoch:
            break
        parts = train_step(hand.model, hand.criterion, hand.optimizer, batch["image"], batch["mask"],
                           scheduler=hand.scheduler, grad_clip=1.0)
        assert set(parts) >= {"loss", "structure"} and not parts["loss"].requires_grad
    for (name, a), b in zip(reference.model.state_dict().items(), hand.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert hand.optimizer.param_groups[1]["lr"] == reference.optimizer.param_groups[1]["lr"]


def _square_oct(root, out, size):
    """The synthetic OCT test set resized to ``size`` x ``size`` (so that validation and evaluation see the same
    pixels: neither resizes)."""
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True)
        for f in sorted((root / "TestDataset" / "GOALS" / sub).iterdir()):
            method = Image.BILINEAR if sub == "images" else Image.NEAREST
            Image.open(f).resize((size, size), method).save(out / sub / f.name)
    return out


class _Layers(torch.nn.Module):
    """A fixed 4-class labeller (a random 5x5 convolution of the image): arg-max maps with real structure, so that
    per-image and pooled Dice differ."""

    classes = 4

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 5, padding=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return self.conv(x)


def test_oct_validation_dice_is_evaluate_mdice(tmp_path):
    """Training validation and ``m2s evaluate`` score OCT with one statistic: the per-image Dice of the arg-max
    labels, per layer, averaged (``OCTMetrics``' mDice; not a Dice pooled over the set's pixels)."""
    root = generate("oct", tmp_path / "oct", n=8, seed=0, size=64, n_test=6, progress=False, workers=1)
    val = _square_oct(root, tmp_path / "square", 64)
    values = "[" + ",".join(map(str, GOALS_CLASS_VALUES)) + "]"
    cfg = tiny(f"data.root={root}", f"data.val_root={val}", "data.task=oct", "model.classes=4",
               f"data.class_values={values}")
    trainer = Trainer(cfg, None, model=_Layers(), log=lambda m: None)
    validation = trainer.validate()
    scores, per_image = evaluate_folder(trainer.model, val, task="oct", size=64, class_values=GOALS_CLASS_VALUES,
                                        batch_size=trainer.batch_per_process, progress=False)
    assert len(per_image) == 6 and 0 < scores["mDice"] < 1  # structured maps, not all one class
    assert validation["val_dice"] == pytest.approx(scores["mDice"], abs=1e-12)
    assert np.isnan(validation["val_iou"])  # OCT's protocol has Dice and MED, no IoU


def test_randomise_batchnorms_draws_like_the_notebooks_did():
    def pasted(module):  # the cell notebooks 02, 03 and 04 carried
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)

    def net():
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4))

    torch.manual_seed(3)
    a = net()
    torch.manual_seed(3)
    b = net()
    torch.manual_seed(7)
    pasted(a)
    torch.manual_seed(7)
    assert randomise_batchnorms(b) is b
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    bn = b[1]
    assert 0.5 <= bn.running_var.min() and bn.running_var.max() <= 2.0 and bn.weight.min() >= 0.5


def test_load_or_train_trains_then_loads(polyp_root, tmp_path, capsys):
    kwargs = dict(data_root=polyp_root, profile="tiny", epochs=1, steps_per_epoch=1, seed=0, device="cpu",
                  image_size=64, train_dir=tmp_path / "fallback")
    trained = load_or_train(tmp_path / "missing.pt", **kwargs)
    assert "No checkpoint (nothing at" in capsys.readouterr().out
    assert trained.history is not None and len(trained.history) == 1 and not trained.model.training
    assert trained.origin.startswith("trained here: 'tiny' profile, 1 epoch(s) of 1 steps")
    loaded = load_or_train(tmp_path / "fallback" / "last.pt", **kwargs)
    assert loaded.history is None and loaded.origin.startswith("checkpoint ")
    for (name, a), b in zip(trained.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name
