"""g2g bench: layer timings and epoch timings have the promised structure (not their values), and
bad arguments are one-line errors before anything runs."""

import json

import pytest

from g2gnet.bench import BenchConfig, bench_layer, epoch_times, run
from g2gnet.cli import main
from g2gnet.errors import G2GError


def test_layer_bench_reports_all_modes(capsys):
    r = run(BenchConfig(widths=(64,), batch=8, repeats=2))
    row = r["layers"][0]
    assert row["width"] == 64 and row["batch"] == 8 and row["dtype"] == "float32"
    assert set(row["modes"]) == {"forward", "forward_backward", "step"}
    for m in row["modes"].values():
        assert m["dense_ms"] > 0 and m["sparse_ms"] > 0
        # ms are rounded to 0.001 and the ratio (of unrounded medians) to 0.001: check it against
        # the interval the rounded ms allow, which is wide when the timings are tiny.
        d, s = m["dense_ms"], m["sparse_ms"]
        assert (d - 5e-4) / (s + 5e-4) - 5e-4 <= m["ratio"] <= (d + 5e-4) / max(s - 5e-4, 1e-9) + 5e-4
    assert "| 64 |" in capsys.readouterr().out
    assert r["machine"]["git_sha"] is None or len(r["machine"]["git_sha"]) == 40


def test_bench_layer_names_its_path():
    r = bench_layer(128, batch=16, repeats=2, warmup=1, groups=4)
    assert r["path"] in ("reference", "native", "torch") and 0.2 < r["density"] < 0.5


def test_epoch_bench_and_cli_json(tiny_fmnist, tmp_path):
    ep = epoch_times(["dense", "g2g-mixer"], data_dir=str(tiny_fmnist), repeats=2, hidden=[32, 32], groups=4)
    assert len(ep["seconds"]["dense"]) == 2 and ep["speedup_vs_first"]["dense"] == 1.0
    out = tmp_path / "bench.json"
    assert main(["bench", "--widths", "32", "--batch", "4", "--repeats", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["layers"][0]["width"] == 32


@pytest.mark.parametrize("args, pattern", [
    (["--dtype", "float64"], "valid: float32, bfloat16, float16"),
    (["--dtype", "bfloat16"], "CUDA only"),
    (["--repeats", "0"], "repeats must be >= 1"),
    (["--batch", "0"], "batch must be >= 1"),
    (["--batch", "-1"], "batch must be >= 1"),
    (["--threads", "0"], "threads must be >= 1"),
    (["--epoch", "dense", "--epoch-repeats", "0"], "epoch_repeats must be >= 1"),
    (["--widths", "1000000"], "GiB"),
    (["--json", "/nonexistent/dir/b.json"], "does not exist"),
])
def test_bad_bench_arguments_are_one_line_errors(capsys, args, pattern):
    assert main(["bench", "--widths", "32", "--repeats", "1", *args]) == 2
    err = capsys.readouterr()
    assert err.out == "" and len(err.err.strip().splitlines()) == 1 and pattern in err.err, err.err
