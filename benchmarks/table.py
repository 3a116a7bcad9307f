import json, sys, warnings
warnings.filterwarnings("ignore")
from g2gnet.kernels.bench import bench_layer, format_result
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
out = []
for tile in [1, 16, 32]:
    for w in [1024, 2048, 4096]:
        r = bench_layer(w, inter_tile=tile, repeats=11, warmup=2, threads=threads)
        print(format_result(r), "| plan build ms", r["plan_build_ms"], flush=True)
        out.append(r)
json.dump(out, open(f"benchmarks/table_t{threads}.json", "w"), indent=1)
