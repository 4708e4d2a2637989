"""Quick image check on one GPU: train the MNIST preset for a time budget, then Inception-FID of
10k chains at E = 0, K and 10K extra steps against the 10k MNIST test images, plus the real-vs-real
floor (test vs the first 10k training images), sampling throughput and 10x10 grids.

Usage (from the repository root; MNIST .gz files in .data/mnist, the FID weights npz in
.data/metrics):
    python experiments/image_quick_run.py OUTDIR mnist SECONDS [--set-style overrides ...]
Environment: DEV (cuda), NB x CH chains (5 x 2000), NF reference images (10000), FLOOR=0 skips
the real-vs-real floor; sampling runs under bf16 autocast when the preset trains with it.
docs/RESULTS.md says which runs used it. The full protocol is `walkback evaluate`.
"""
import json, sys, time
from pathlib import Path
import torch
sys.path.insert(0, "src")
from walkback.presets import get_preset
from walkback.config import apply_overrides
from walkback.train import train
from walkback.sampler import anneal_progressive
from walkback.data.images import load_image_dataset, to_display_uint8, to_model_space
from walkback.metrics import load_fid_inception, compute_stats, fid_from_stats
from PIL import Image

import os
DEV = os.environ.get("DEV", "cuda"); NB = int(os.environ.get("NB", "5")); CH = int(os.environ.get("CH", "2000"))
out, preset, seconds, sets = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4:]
cfg = apply_overrides(get_preset(preset), ["data.root=.data/mnist", f"train.time_limit_s={seconds}",
                      "train.steps=1000000", f"train.device={DEV}", "train.checkpoint_every=100000"] + sets)
t0 = time.time()
res = train(cfg, out / "run", overwrite=True, progress=False)
train_s = time.time() - t0
recs = [json.loads(l) for l in open(out / "run/metrics.jsonl")]
print("train", res.step, "steps", round(train_s), "s; last", recs[-1], flush=True)
m = res.model.to(DEV).eval()
K = len(m.active_temperatures)
net = load_fid_inception(".data/metrics/fid_inception_v3_2015-12-05_pool3_fp16.npz", device=DEV)
test = load_image_dataset("mnist", "test", root=".data/mnist")
train_set = load_image_dataset("mnist", "train", root=".data/mnist")
ref = compute_stats(test.images[:int(os.environ.get("NF", "10000"))], net, batch_size=500, device=DEV, progress=False)
floor = (fid_from_stats(compute_stats(train_set.images[:int(os.environ.get("NF", "10000"))], net, batch_size=500, device=DEV, progress=False), ref)
         if os.environ.get("FLOOR", "1") == "1" else None)
print("floor test vs train[:10k]", floor, flush=True)
caps = {0: [], K: [], 10 * K: []}
mcaps = {0: [], K: [], 10 * K: []}  # means of the step that produced each captured state
cool_rms = torch.zeros(11 * K + 1)  # root-mean-square of the cooling states per chain index
g = torch.Generator(DEV).manual_seed(0)
t1 = time.time(); evals = 0
amp = torch.autocast(DEV, dtype=torch.bfloat16, enabled=cfg.train.amp == "bf16")
with amp:
    for b in range(NB):
        for st in anneal_progressive(m.operator, m.prior, m.active_temperatures, CH, extra_steps=10 * K, generator=g):
            if st.index - K in caps:
                caps[st.index - K].append(st.state.float().cpu())
                mcaps[st.index - K].append(st.mean.float().cpu())
            cool_rms[st.index] += st.state.float().square().mean().item() / NB
        evals += CH * 11 * K
samp_s = time.time() - t1
# the heating marginals the operator was trained on, from 2000 test images (EMA operator)
from walkback.trajectory import walk_away
x0 = to_model_space(test.images[:2000]).to(DEV)
with amp:
    traj = walk_away(m.heating_path(), x0, generator=g)
heat_rms = traj.states.float().square().flatten(2).mean((1, 2)).cpu()
result = {"preset": preset, "sets": sets, "steps": res.step, "train_s": train_s, "K": K,
          "updates_per_s": recs[-1]["updates_per_s"], "images_per_s": recs[-1]["images_per_s"],
          "sampling_operator_evals_per_s": evals / samp_s, "floor": floor, "last_loss": recs[-1]["loss_nats"],
          "last_record": recs[-1], "sampling_amp": cfg.train.amp,
          # rms of s_t along heating (t = 0..K) and of the cooling chain at the same temperature
          "heat_rms": [round(float(v) ** 0.5, 3) for v in heat_rms],
          "cool_rms": [round(float(v) ** 0.5, 3) for v in cool_rms.flip(0)[10 * K:]],
          "prior_var": float(m.prior.var.mean())}
for e, chunks in caps.items():
    x = torch.cat(chunks)
    u8 = to_display_uint8(x)
    st = compute_stats(u8, net, batch_size=500, device=DEV, progress=False)
    result[f"fid_E{e}"] = fid_from_stats(st, ref)
    result[f"mean_abs_E{e}"] = float(x.abs().mean())
    result[f"fid_mean_E{e}"] = fid_from_stats(compute_stats(to_display_uint8(torch.cat(mcaps[e])), net, batch_size=500, device=DEV, progress=False), ref)
    if len(u8) < 100: continue
    grid = u8[:100].reshape(10, 10, 28, 28).permute(0, 2, 1, 3).reshape(280, 280).numpy()
    Image.fromarray(grid).save(out / f"grid_E{e}.png")
print(json.dumps(result), flush=True)
(out / "result.json").write_text(json.dumps(result, indent=1))
