"""`m2s train | evaluate | predict`: a round trip on a tiny set, and one-line errors for bad inputs."""
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from m2s_lib.cli import main
from m2s_lib.engine.checkpoint import load_checkpoint
from m2s_lib.engine.history import METRICS_COLUMNS

SMALL = ["data.size=64", "data.train_sizes=[64]", "optim.batch_size=4", "model.channels=16", "run.progress=false",
         "data.val_fraction=0.25"]  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from m2s_lib.data.synthetic import generate

    return generate("polyp", tmp_path_factory.mktemp("cli") / "polyp", n=8, seed=2, size=64, n_test=2,
                    progress=False, workers=1)  # fmt: skip


def test_train_evaluate_predict_round_trip(data_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--profile", "tiny", "--data-root", str(data_root), "--out", str(out), "--epochs", "1",
                 *SMALL]) == 0  # fmt: skip
    for name in ("last.pt", "best.pt", "metrics.csv", "config.yaml"):
        assert (out / name).is_file(), name
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["optim"]["epochs"] == 1 and saved["model"]["channels"] == 16 and saved["profile"] == "tiny"
    assert list(pd.read_csv(out / "metrics.csv").columns) == list(METRICS_COLUMNS)
    assert "done: 1/1 epochs" in capsys.readouterr().out

    # continue the same run for one more epoch: settings come from the checkpoint
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2"]) == 0
    assert load_checkpoint(out / "last.pt")["epoch"] == 2 and len(pd.read_csv(out / "metrics.csv")) == 2

    ev = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--data-root", str(data_root), "--out", str(ev),
                 "--no-progress"]) == 0  # fmt: skip
    results = pd.read_csv(ev / "results.csv")
    assert list(results.columns) == ["dataset", "n", "mDice", "mIoU", "wFm", "Sm", "maxEm", "MAE", "protocol"]
    assert len(results) == 5 and (ev / "Kvasir" / "0001.png").is_file()
    assert "| dataset" in capsys.readouterr().out

    pred = tmp_path / "pred"
    image = data_root / "TestDataset" / "CVC-300" / "images" / "0001.jpg"
    assert main(["predict", "--checkpoint", str(out / "last.pt"), str(image), "--out", str(pred), "--no-progress"]) == 0
    mask = np.asarray(Image.open(pred / "masks" / "0001.png"))
    assert mask.shape == np.asarray(Image.open(image)).shape[:2]
    assert (pred / "overlays" / "0001.png").is_file() and (pred / "probs" / "0001.png").is_file()


def test_bad_inputs_give_one_line_errors(data_root, tmp_path, capsys):
    run = ["train", "--profile", "tiny", "--out", str(tmp_path / "o")]
    assert main([*run, "--data-root", str(tmp_path / "missing"), *SMALL]) == 1
    err = capsys.readouterr().err
    assert "m2s train: error:" in err and "missing" in err and "does not exist" in err
    assert main([*run, "optim.lrr=0.1"]) == 1
    assert "Did you mean 'optim.lr'?" in capsys.readouterr().err
    assert main(["train", "--profile", "tiny-ish", "--out", str(tmp_path / "o")]) == 1
    assert "Did you mean 'tiny'" in capsys.readouterr().err
    assert main(["train", "--profile", "tiny", *SMALL]) == 1
    assert "--out is required" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 1
    assert "no last.pt" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--data-root", str(data_root),
                 "--out", str(tmp_path / "e")]) == 1  # fmt: skip
    assert "does not exist" in capsys.readouterr().err


def test_existing_run_needs_resume_or_overwrite(data_root, tmp_path, capsys):
    args = ["train", "--profile", "tiny", "--data-root", str(data_root), "--out", str(tmp_path), "--epochs", "1",
            *SMALL, "run.max_steps_per_epoch=1"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_print_config_and_help(capsys):
    assert main(["train", "--profile", "paper-covid", "--print-config", "optim.lr=0.01", "--epochs", "3"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["optim"]["lr"] == 0.01 and cfg["optim"]["epochs"] == 3 and cfg["data"]["task"] == "covid"
    for command in ("train", "evaluate", "predict"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert "--checkpoint" in text or "--profile" in text
