"""g2g bench: layer timings and epoch timings have the promised structure (not their values)."""

import json

from g2gnet.bench import epoch_times, run_bench
from g2gnet.cli import main


def test_layer_bench_reports_all_modes(capsys):
    r = run_bench([64], batch=8, repeats=2)
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


def test_epoch_bench_and_cli_json(tiny_fmnist, tmp_path):
    ep = epoch_times(["dense", "g2g-mixer"], data_dir=str(tiny_fmnist), repeats=2, hidden=[32, 32], groups=4)
    assert len(ep["seconds"]["dense"]) == 2 and ep["speedup_vs_first"]["dense"] == 1.0
    out = tmp_path / "bench.json"
    assert main(["bench", "--widths", "32", "--batch", "4", "--repeats", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["layers"][0]["width"] == 32
    assert main(["bench", "--dtype", "float64"]) == 2
