"""Parallel sweep of 2-D variants on a CPU pool (one single-thread run per core): the variant
table of docs/RESULTS.md.

Usage, from the repository root:
    python experiments/sweep_toy.py OUTDIR STEPS 'NAME|PRESET|key=value,key=value' ...
Each run trains PRESET with the overrides for STEPS minibatches, then scores 5000 chains at
E = 0, K and 10K extra steps (seed 1) and the plain bound on 2000 held-out points; one JSON
line per run is printed and appended to OUTDIR/results.jsonl.
"""
import json, os, sys, time
from concurrent.futures import ProcessPoolExecutor

def run(spec, outdir, steps):
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, "src")
    from walkback.presets import get_preset
    from walkback.config import apply_overrides
    from walkback.runs import load_data
    from walkback.train import train
    from walkback.metrics.toy import toy_metrics
    from walkback.objective import variational_bound
    name, preset, sets = spec.split("|")
    cfg = get_preset(preset)
    apply_overrides(cfg, [f"train.steps={steps}", "train.device=cpu", "train.log_every=100"] + [s for s in sets.split(",") if s])
    t = time.time()
    try:
        res = train(cfg, f"{outdir}/{name}", overwrite=True, progress=False)
    except Exception as e:
        return {"name": name, "error": str(e)}
    tt = time.time() - t
    data = load_data(cfg)
    m = res.model
    K = len(m.active_temperatures)
    out = {"name": name, "sets": sets, "train_s": round(tt, 1), "K": K}
    g = torch.Generator().manual_seed(1)
    from walkback.sampler import anneal_progressive
    caps = {0: None, K: None, 10 * K: None}
    for st in anneal_progressive(m.operator, m.prior, m.active_temperatures, 5000, extra_steps=10 * K, generator=g):
        e = st.index - K
        if e in caps:
            caps[e] = st.state
    for e, s in caps.items():
        mt = toy_metrics(cfg.data.name, s, data.train, data.heldout)
        mt = {k: (round(v, 4) if isinstance(v, float) else ([round(w, 3) for w in v] if isinstance(v, list) else v)) for k, v in mt.items()}
        out[f"E{e}"] = mt
    x = data.heldout[:2000]
    b = variational_bound(m.operator, m.prior, m.heating_path(), m.active_temperatures, x, num_paths=1, generator=g)
    out["bound_nats"] = round(float(b.log_bound.mean()), 4)
    out["final_loss"] = json.loads(open(f"{outdir}/{name}/metrics.jsonl").read().splitlines()[-1])["loss_nats"]
    return out

if __name__ == "__main__":
    outdir, steps, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    os.makedirs(outdir, exist_ok=True)
    with ProcessPoolExecutor(max_workers=min(len(specs), os.cpu_count() or 1)) as pool:
        futs = [pool.submit(run, s, outdir, steps) for s in specs]
        for f in futs:
            r = f.result()
            print(json.dumps(r), flush=True)
            with open(f"{outdir}/results.jsonl", "a") as h:
                h.write(json.dumps(r) + "\n")
