"""m2s_lib.config: profiles, YAML, key=value overrides, coercion and helpful errors."""
import pytest
import yaml

from m2s_lib.config import PROFILES, Config, ConfigError, get_profile, load_config, parse_overrides, profile_overrides
from m2s_lib.constants import TRAIN_SIZES


def test_paper_profiles_hold_the_papers_settings():
    p = get_profile("paper-polyp")
    assert (p.model.name, p.model.encoder_name, p.model.encoder_weights) == ("m2snet", "res2net50d", "imagenet")
    assert (p.data.size, p.data.eval_size, tuple(p.data.train_sizes)) == (352, 352, TRAIN_SIZES)
    assert (p.optim.batch_size, p.optim.epochs, p.optim.momentum, p.optim.weight_decay) == (16, 50, 0.9, 5e-4)
    assert p.optim.lr == 0.05 and p.optim.encoder_lr == pytest.approx(0.005)
    assert (p.optim.schedule, p.optim.schedule_unit) == ("triangular", "epoch")
    assert (p.loss.lossnet_weight, p.loss.lossnet_weights) == (0.1, "imagenet")
    assert (p.data.rotation, p.data.hflip) == (10.0, True)
    assert get_profile("paper-covid").optim.epochs == 200
    busi = get_profile("paper-busi")
    assert (busi.optim.epochs, busi.data.task, busi.data.n_folds) == (100, "busi", 4)
    oct_ = get_profile("paper-oct")
    assert (oct_.optim.epochs, oct_.model.classes, oct_.data.class_values) == (100, 4, [255, 0, 80, 160])


def test_tiny_profile_is_offline_and_light():
    t = get_profile("tiny")
    assert t.model.encoder_weights is None and t.loss.lossnet_weight == 0 and t.loss.lossnet_weights is None
    assert t.model.encoder_name == "resnet18d" and t.data.root is None and t.data.size < 352
    assert max(t.data.train_sizes) == t.data.size and t.data.val_fraction > 0
    assert set(profile_overrides("tiny")) == set(PROFILES["tiny"])
    # calibrated together (docs/data.md): the teaching polyps and a short warm-up; the paper keeps the triangle
    assert t.data.synthetic_difficulty == "teaching" and t.optim.warmup_fraction == 0.2
    assert get_profile("paper-polyp").optim.warmup_fraction == 0.5
    assert get_profile("paper-polyp").data.synthetic_difficulty == "realistic"


def test_overrides_are_coerced_to_the_field_types():
    cfg = load_config(profile="tiny", overrides=[
        "optim.lr=5e-3", "optim.epochs=3", "data.train_sizes=[64,96]", "model.encoder_weights=null",
        "run.deterministic=no", "model.kernel_sizes=1,3", "data.val_root=/some/where", "optim.grad_clip=1",
    ])  # fmt: skip
    assert cfg.optim.lr == 0.005 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.epochs == 3 and cfg.data.train_sizes == [64, 96] and cfg.model.kernel_sizes == [1, 3]
    assert cfg.model.encoder_weights is None and cfg.run.deterministic is False
    assert cfg.data.val_root == "/some/where" and cfg.optim.grad_clip == 1.0
    assert cfg.override({"model.name": "MSNet".lower()}).model.name == "msnet"


@pytest.mark.parametrize(
    "key,suggestion",
    [("optim.lrr", "optim.lr"), ("lr", "optim.lr"), ("epochs", "optim.epochs"), ("optm.lr", "optim.lr"),
     ("run.sed", "run.seed"), ("model.encoder", "model.encoder_name"), ("data.train_size", "data.train_sizes")],
)  # fmt: skip
def test_unknown_key_suggests_the_closest(key, suggestion):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'.*Did you mean '{suggestion}'"):
        load_config(profile="tiny", overrides=[f"{key}=1"])


@pytest.mark.parametrize(
    "item,match",
    [("optim.epochs=abc", "not a valid int"), ("optim.epochs=2.5", "not a valid int"),
     ("run.amp=maybe", "not a valid bool"), ("model.name=unet", "not one of"), ("data.size=100", "multiple of 8"),
     ("optim.lr", "key=value"), ("data.val_fraction=1.5", r"\[0, 1\)"), ("model.classes=0", "≥ 1"),
     ("optim.warmup_fraction=1", r"warmup_fraction=1.0 must be in \(0, 1\)"),
     ("data.synthetic_difficulty=easy", r"'easy' is not one of \['realistic', 'teaching'\]"),
     ("loss.structure_weight=-1", "must be ≥ 0"), ("loss.structure_weight=0", "both 0: no loss is left")],
)  # fmt: skip
def test_bad_values_are_explained(item, match):
    with pytest.raises(ConfigError, match=match):
        load_config(profile="tiny", overrides=[item])


def test_unknown_profile_and_section():
    with pytest.raises(ConfigError, match="Did you mean 'paper-polyp'"):
        get_profile("paper-polp")
    with pytest.raises(ConfigError, match="unknown config section 'optimizer'.*'optim'"):
        Config.from_dict({"optimizer": {"lr": 1.0}})


def test_yaml_round_trip_and_layering(tmp_path):
    cfg = load_config(profile="tiny", overrides=["optim.epochs=4"])
    path = tmp_path / "config.yaml"
    cfg.to_yaml(path)
    again = Config.from_yaml(path)
    assert again == cfg and again.profile == "tiny"
    # a partial file on top of its profile, then overrides on top of the file
    partial = tmp_path / "mine.yaml"
    partial.write_text(yaml.safe_dump({"profile": "tiny", "optim": {"epochs": 7, "lr": 0.01}}))
    layered = load_config(partial, overrides=["optim.lr=0.02"])
    assert (layered.optim.epochs, layered.optim.lr, layered.model.encoder_name) == (7, 0.02, "resnet18d")
    assert load_config(partial, profile="paper-polyp").model.encoder_name == "res2net50d"  # explicit profile wins
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lrr: 1}\n")
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config(bad)


def test_diff_and_parse_overrides():
    a, b = get_profile("tiny"), get_profile("tiny").override(["optim.epochs=99"])
    assert a.diff(b) == {"optim.epochs": (a.optim.epochs, 99)}
    assert parse_overrides(["run.out=a=b"]) == {"run.out": "a=b"}
    kw = get_profile("paper-polyp").model.build_kwargs(weights=False)
    assert kw["encoder_weights"] is None and "unit" not in kw  # the model's own default unit


def test_yaml_files_are_read_by_one_reader_that_refuses_a_key_given_twice(tmp_path):
    """Duplicate keys (a second `optim:` section) are refused naming the key; YAML merge keys still work."""
    from m2s_lib.config import Config, ConfigError, load_config, read_yaml

    f = tmp_path / "c.yaml"
    f.write_text("base: &b {lr: 0.01}\noptim:\n  <<: *b\n  epochs: 3\n")
    assert read_yaml(f)["optim"] == {"lr": 0.01, "epochs": 3}
    f.write_text("optim:\n  lr: 0.01\noptim:\n  epochs: 3\n")
    for read in (read_yaml, Config.from_yaml, load_config):
        with pytest.raises(ConfigError, match=r"c\.yaml: the key 'optim' appears twice \(lines 1 and 3\)"):
            read(f)
