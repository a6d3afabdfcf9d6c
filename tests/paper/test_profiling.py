"""Parameter and multiply-add counts (fvcore), latency measurement and the `m2s profile` command."""
import torch

from m2s_lib.cli import main as m2s
from m2s_lib.mmsm import ms_key
from m2s_lib.model import M2SNet, MSNet
from m2s_lib.profiling import count_macs, count_parameters, measure_latency, profile_model


def test_dense_filters_cost_exactly_their_convolutions(small_encoder):
    fast, dense = M2SNet(encoder_name=small_encoder), M2SNet(encoder_name=small_encoder, msu_impl="dense")
    with torch.no_grad():
        feats = fast.eval().forward_features(torch.zeros(1, 3, 64, 64))
    # Each unit filters both inputs with F_3 and F_5, at the finer input's resolution: C·C·k·k MACs per pixel.
    pixels = sum(feats[ms_key(n, i)].shape[-1] * feats[ms_key(n, i)].shape[-2] for n in range(2, 6) for i in range(1, 7 - n))
    expected = 2 * pixels * 64 * 64 * (3 * 3 + 5 * 5)
    assert count_macs(dense, 64) - count_macs(fast, 64) == expected


def test_fast_m2snet_costs_about_what_msnet_costs(small_encoder):
    m2s, ms = count_macs(M2SNet(encoder_name=small_encoder), 96), count_macs(MSNet(encoder_name=small_encoder), 96)
    assert ms < m2s < 1.01 * ms


def test_latency_and_profile(small_encoder):
    model = M2SNet(encoder_name=small_encoder)
    lat = measure_latency(model, 64, repeats=2, warmup=1)
    assert len(lat["runs_s"]) == 2 and 0 < lat["min_s"] <= lat["median_s"]
    prof = profile_model(model, "m2snet", 64, latency=False)
    assert prof.params_m == count_parameters(model) / 1e6 and prof.gmacs > 0 and prof.latency_ms is None
    assert model.training  # profiling restores the mode


def test_profile_command_prints_the_figures(capsys, small_encoder):
    assert m2s(["profile", "--model", "msnet", "--encoder", small_encoder, "--size", "64", "--no-latency"]) == 0
    out = capsys.readouterr().out
    params = count_parameters(MSNet(encoder_name=small_encoder)) / 1e6
    assert f"{params:.2f} M parameters" in out and "GMACs" in out


def test_cli_reports_bad_options_in_one_line(capsys):
    assert m2s(["profile", "--encoder", "no_such_net", "--size", "64", "--no-latency"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("m2s profile: error: encoder_name='no_such_net' is not a timm model")


def test_tuple_inputs_are_counted_and_timed():
    """A module of several inputs (a unit takes two feature maps): the same helpers, given the inputs."""
    from m2s_lib.subtraction import MultiScaleSubtractionUnit

    unit = MultiScaleSubtractionUnit(8, (1, 3), impl="dense")
    pair = (torch.rand(1, 8, 8, 8), torch.rand(1, 8, 16, 16))
    dense = count_macs(unit, inputs=pair)
    fast = count_macs(MultiScaleSubtractionUnit(8, (1, 3), impl="fast"), inputs=pair)
    assert dense - fast == 2 * 16 * 16 * 8 * 8 * 3 * 3  # F3 on both inputs, at the finer input's size
    lat = measure_latency(unit, inputs=pair, repeats=2, warmup=0)
    assert len(lat["runs_s"]) == 2


def test_latency_synchronises_the_device(monkeypatch):
    """Every device is waited for around each run: CUDA with its device, Apple MPS without one; the CPU never."""
    from m2s_lib import profiling

    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("cuda", str(device))))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append(("mps", None)))
    profiling.synchronize("cpu")
    profiling.synchronize("cuda:1")
    profiling.synchronize("mps")
    assert calls == [("cuda", "cuda:1"), ("mps", None)]
    calls.clear()

    class OnMPS(torch.nn.Module):  # reports its input's device as MPS without needing one
        def forward(self, x):
            return x

    fake = torch.empty(0)
    monkeypatch.setattr(profiling, "example_inputs", lambda *a, **k: (fake,))
    monkeypatch.setattr(torch.Tensor, "device", property(lambda self: torch.device("mps")))
    profiling.measure_latency(OnMPS(), inputs=(fake,), repeats=2, warmup=1)
    assert calls == [("mps", None)] * 6  # before and after each of the 3 runs


def test_counting_macs_warns_nothing():
    """fvcore's deprecated torch.jit calls (at its import and in its tracer) do not reach the user."""
    import subprocess
    import sys

    code = ("import torch; from m2s_lib.profiling import count_macs; "
            "print(count_macs(torch.nn.Conv2d(3, 4, 3), inputs=torch.zeros(1, 3, 8, 8)))")
    res = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-W", "error::DeprecationWarning", "-c", code],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == str(4 * 3 * 9 * 36), res.stderr[-2000:]
