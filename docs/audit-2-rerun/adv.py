import sys, torch, json, shutil, os
src, kind = "base1", sys.argv[1]
for out, partial in [(f"adv_{kind}", False), (f"advp_{kind}", True)]:
    shutil.rmtree(out, ignore_errors=True); shutil.copytree(src, out)
    ck = torch.load(f"{src}/checkpoint.pt", weights_only=True); m = ck["model"]
    p = "blocks.0.linear."
    if kind == "bits_int": m[p + "packed.mask_bits"] = 5
    elif kind == "values_str": m[p + "packed.weight_values"] = "abc"
    elif kind == "v01_badweight":
        for k in [k for k in m if k.startswith(p + "packed.")]: del m[k]
        m[p + "mask"] = torch.ones(64, 784, dtype=torch.bool); m[p + "weight"] = torch.zeros(3)
    elif kind == "bits_float": m[p + "packed.mask_bits"] = m[p + "packed.mask_bits"].float()
    elif kind == "groups_99": m[p + "packed.in_groups"] = torch.full_like(m[p + "packed.in_groups"], 99)
    elif kind == "groups_float": m[p + "packed.in_groups"] = m[p + "packed.in_groups"].float()
    elif kind == "values_nan": m[p + "packed.weight_values"] = torch.full_like(m[p + "packed.weight_values"], float("nan"))
    torch.save(ck, f"{out}/checkpoint.pt")
    if partial:  # an unfinished 2-epoch run: resumable
        os.remove(f"{out}/summary.json")
        c = json.load(open(f"{out}/config.json")); c["train"]["epochs"] = 2; json.dump(c, open(f"{out}/config.json", "w"))
print("made", kind)
