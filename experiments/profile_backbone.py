"""Time the mnist preset's U-Net on one GPU: a no-grad forward (one heating step) and a
forward + backward + Adam step, fp32 and bf16 autocast, at three batch sizes.
Usage: python experiments/profile_backbone.py   (from the repository root, on a GPU machine)"""
import sys, time, torch
sys.path.insert(0, "src")
from walkback.presets import get_preset
from walkback.config import apply_overrides
from walkback.model import build_model
dev = "cuda"
for amp in (False, True):
    for B in (128, 512, 2048):
        cfg = apply_overrides(get_preset("mnist"), [])
        m = build_model(cfg).to(dev)
        op = m.operator
        x = torch.randn(B, 1, 28, 28, device=dev)
        opt = torch.optim.Adam(m.parameters(), lr=1e-4, fused=True)
        def fwd():
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=amp):
                return op(x, 2.0).mean
        def step():
            with torch.autocast("cuda", torch.bfloat16, enabled=amp):
                loss = -op(x, 2.0).log_prob(x).mean()
            opt.zero_grad(); loss.backward(); opt.step()
        for f, name in ((fwd, "fwd"), (step, "fwd+bwd+adam")):
            for _ in range(3): f()
            torch.cuda.synchronize(); t = time.time()
            for _ in range(20): f()
            torch.cuda.synchronize(); dt = (time.time() - t) / 20
            print(f"amp={amp} B={B} {name}: {dt*1000:.1f} ms  ({B/dt:.0f} img/s)", flush=True)
