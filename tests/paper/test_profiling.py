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
