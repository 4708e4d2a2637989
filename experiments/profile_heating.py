"""Where a VW update's time goes on one GPU: `mnist-tuned`'s U-Net, 256 states, bf16.

Times, in ms per call (wall clock, 30 calls after 3 warm-ups), and for the calls that do not
wait for the GPU also the CPU time to issue them and the GPU's span (CUDA events):
  heat eager / heat graphed: one no-grad heating forward (one temperature per path) and its
      draw, by the operator or replayed from a CUDA graph (``graphs.GraphedForward``);
  update, waits per update / one wait: forward, backward, gradient clip and Adam, with the two
      finiteness checks that each waited for the GPU, or with none (the minibatch's one check);
  minibatch: 30 heating steps then 30 updates, per update, for the four combinations.
Usage: python experiments/profile_heating.py   (from the repository root, on a GPU machine)
"""
import sys
import time

import torch

sys.path.insert(0, "src")
from walkback.config import apply_overrides  # noqa: E402
from walkback.graphs import GraphedForward  # noqa: E402
from walkback.model import build_model  # noqa: E402
from walkback.presets import get_preset  # noqa: E402

torch.backends.cudnn.benchmark = True
torch.backends.cudnn.allow_tf32 = True
torch.backends.cuda.matmul.allow_tf32 = True
torch.manual_seed(0)
model = build_model(apply_overrides(get_preset("mnist-tuned"), [])).to("cuda")
op = model.operator
opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
x = torch.randn(256, 1, 28, 28, device="cuda")
temps = torch.rand(256, device="cuda") * 100 + 1
graphed = GraphedForward(op, "bf16")


def bf16() -> torch.autocast:
    return torch.autocast("cuda", torch.bfloat16)


def heat(forward) -> torch.Tensor:
    with torch.no_grad(), bf16():
        return forward(x, temps).sample()


def update(wait: bool) -> None:
    with bf16():
        loss = -op(x, temps).log_prob(x).mean() / x[0].numel()
    if wait and not torch.isfinite(loss):
        raise SystemExit("non-finite loss")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    if wait and not torch.isfinite(norm):
        raise SystemExit("non-finite gradient norm")
    opt.step()


def wall(f, n: int = 30) -> float:
    for _ in range(3):
        f()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        f()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / n * 1000


def issue_and_span(f, n: int = 30) -> tuple[float, float]:
    for _ in range(3):
        f()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start = time.perf_counter()
    a.record()
    for _ in range(n):
        f()
    b.record()
    issued = (time.perf_counter() - start) / n * 1000
    torch.cuda.synchronize()
    return issued, a.elapsed_time(b) / n


print(torch.cuda.get_device_name(), flush=True)
for name, forward in (("heat eager", op), ("heat graphed", graphed)):
    issued, span = issue_and_span(lambda: heat(forward))
    print(f"{name:28s} wall {wall(lambda: heat(forward)):6.2f} ms  issue {issued:6.2f} ms  "
          f"GPU span {span:6.2f} ms", flush=True)
print(f"{'update, waits per update':28s} wall {wall(lambda: update(True)):6.2f} ms", flush=True)
issued, span = issue_and_span(lambda: update(False))
print(f"{'update, one wait':28s} wall {wall(lambda: update(False)):6.2f} ms  issue {issued:6.2f} ms"
      f"  GPU span {span:6.2f} ms", flush=True)
for name, forward, wait in (("eager, waits per update", op, True),
                            ("graphed, waits per update", graphed, True),
                            ("eager, one wait", op, False), ("graphed, one wait", graphed, False)):
    def minibatch() -> None:
        for _ in range(30):
            heat(forward)
        for _ in range(30):
            update(wait)
    print(f"minibatch {name:26s} {wall(minibatch, n=3) / 30:6.2f} ms per update", flush=True)
