import sys, torch, shutil
kind = sys.argv[1]; out = f"advflat_{kind}"
shutil.rmtree(out, ignore_errors=True); shutil.copytree("base1", out)
ck = torch.load("base1/checkpoint.pt", weights_only=True); m = ck["model"]
for k in [k for k in m if ".packed." in k]:
    v = m.pop(k)
    if not k.endswith("packed.blocks"): m[k.replace("packed.", "")] = v   # the first packed version's flat keys
if kind == "ok": pass
elif kind == "bits_int": m["blocks.0.linear.mask_bits"] = 5
elif kind == "values_str": m["blocks.0.linear.weight_values"] = "abc"
torch.save(ck, f"{out}/checkpoint.pt"); print("made", out)
