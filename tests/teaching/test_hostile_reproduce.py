"""Hostile inputs for the reproduction: an absent device or an unknown profile is refused before any work."""

# ruff: noqa: F811 (the module-scoped fixtures synth/ckpt come from hostile_support)
from __future__ import annotations

import pytest
from hostile_support import (  # noqa: F401
    absent_devices,
)


# ---------------------------------------------------------------------------------------------------------------
# Reproduction
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", absent_devices(["cuda", "mps"]))
def test_reproduce_checks_the_device_before_any_work(device, tmp_path, monkeypatch, capsys):
    """Failure 4: `--device cuda` without CUDA generated data, made a run folder and died in a notebook."""
    from m2s_lib.teaching import reproduce

    calls = []
    g = reproduce.main.__globals__  # the module that really runs main (wherever it lives)
    monkeypatch.setitem(
        g,
        "resolve_data",
        lambda *a, **k: (
            calls.append("data")
            or (_ for _ in ()).throw(AssertionError("data generated before the device was checked"))
        ),
    )
    monkeypatch.setitem(g, "run_notebook", lambda *a, **k: calls.append("notebook"))
    out = tmp_path / "runs"
    code = reproduce.main(["--device", device, "--out", str(out), "--data-dir", str(tmp_path / "data"),
                           "--notebooks", "00", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and calls == [], err
    assert "Traceback" not in err and repr(device) in err and "--device cpu" in err
    assert not out.exists() and not (tmp_path / "data").exists()


def test_reproduce_unknown_profile_before_any_work(tmp_path, capsys):
    from m2s_lib.teaching import reproduce

    code = reproduce.main(["--profile", "tinny", "--out", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and "tinny" in err and "tiny" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "d").exists()
