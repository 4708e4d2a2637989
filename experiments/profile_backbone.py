"""Time the mnist preset's U-Net on one GPU under several kernel settings: a no-grad forward
(one heating step) at 256 and 1024 states and a forward + backward + Adam step at 256.

Settings: plain fp32 (the first profile), + cuDNN autotuning and TF32 (what `walkback train`
enables on a GPU), + bf16 autocast, + channels_last, + torch.compile (compile time printed).
Usage: python experiments/profile_backbone.py   (from the repository root, on a GPU machine)"""
import sys, time, torch
sys.path.insert(0, "src")
from walkback.presets import get_preset
from walkback.config import apply_overrides
from walkback.model import build_model

DEV = "cuda"
SETTINGS = {  # name: (tf32 + cudnn.benchmark, bf16, channels_last, compile)
    "fp32": (False, False, False, False),
    "tf32": (True, False, False, False),
    "bf16": (True, True, False, False),
    "bf16+channels_last": (True, True, True, False),
    "bf16+compile": (True, True, False, True),
}


def timed(f, n=20):
    for _ in range(3):
        f()
    torch.cuda.synchronize(); t = time.time()
    for _ in range(n):
        f()
    torch.cuda.synchronize()
    return (time.time() - t) / n


for name, (fast, amp, cl, comp) in SETTINGS.items():
    torch.backends.cudnn.benchmark = fast
    torch.backends.cudnn.allow_tf32 = fast
    torch.backends.cuda.matmul.allow_tf32 = fast
    torch.manual_seed(0)
    m = build_model(apply_overrides(get_preset("mnist"), [])).to(DEV)
    if cl:
        m = m.to(memory_format=torch.channels_last)
    op = m.operator
    if comp:
        op.backbone.compile()
    opt = torch.optim.Adam(m.parameters(), lr=1e-4, fused=True)
    fmt = torch.channels_last if cl else torch.contiguous_format
    for B in (256, 1024):
        x = torch.randn(B, 1, 28, 28, device=DEV).contiguous(memory_format=fmt)
        temp = torch.full((B,), 2.0, device=DEV)

        def fwd():
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=amp):
                return op(x, temp).mean

        def step():
            with torch.autocast("cuda", torch.bfloat16, enabled=amp):
                loss = -op(x, temp).log_prob(x).mean()
            opt.zero_grad(); loss.backward(); opt.step()

        t0 = time.time(); fwd(); torch.cuda.synchronize(); first = time.time() - t0
        dt = timed(fwd)
        print(f"{name:20s} B={B:5d} fwd           {dt*1000:7.2f} ms {B/dt:8.0f} img/s"
              f"  (first call {first:.1f} s)", flush=True)
        if B == 256:
            t0 = time.time(); step(); torch.cuda.synchronize(); first = time.time() - t0
            dt = timed(step)
            print(f"{name:20s} B={B:5d} fwd+bwd+adam  {dt*1000:7.2f} ms {B/dt:8.0f} img/s"
                  f"  (first call {first:.1f} s)", flush=True)
