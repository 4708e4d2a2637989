"""Real-vs-real FID floors for data copies too large to travel to the GPU with the FID weights.

Each call to the GPU machine carries at most 64 MiB; the FID weights alone are 44 MB. So the
image zips are split (member bytes copied, nothing re-encoded) into parts that fit, the FID
feature sums of each part are computed on the GPU, and the exact sums are merged here
(FeatureStats sums are additive, so the result equals one pass over the whole split).

    python experiments/fid_reference_parts.py split ZIP PARTS OUTDIR     # here
    python experiments/fid_reference_parts.py stats PART.zip KIND OUTDIR  # GPU; KIND: cifar10 |
                                                                          # celeba32 | celeba64
    python experiments/fid_reference_parts.py merge A1.npz[,A2.npz...] B1.npz[,...]  # here

Decoding uses the library's readers' own functions (CIFAR-10: 32x32 RGB; CelebA: the centre
crop and BICUBIC resize of walkback.data.celeba), features the FID Inception-v3 with the
weights in .data/metrics (or WALKBACK_FID_WEIGHTS).
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, "src")
from walkback.data.celeba import _face  # noqa: E402
from walkback.data.cifar import _decode32  # noqa: E402
from walkback.metrics import FeatureStats, compute_stats, fid_from_stats, load_fid_inception  # noqa: E402

BLOCKS = 3  # sum_outer is saved in row blocks so each file stays under 16 MiB


def split(zip_path: str, parts: int, outdir: str) -> None:
    with zipfile.ZipFile(zip_path) as source:
        members = sorted(m for m in source.namelist() if m.endswith(".jpg"))
        Path(outdir).mkdir(parents=True, exist_ok=True)
        for i in range(parts):
            chunk = members[i * len(members) // parts:(i + 1) * len(members) // parts]
            target = Path(outdir) / f"{Path(zip_path).stem}-part{i}of{parts}.zip"
            with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
                for member in chunk:
                    out.writestr(member, source.read(member))
            print(target, len(chunk), chunk[0], chunk[-1])


def decode(kind: str, data: bytes, where: str) -> np.ndarray:
    if kind == "cifar10":
        return _decode32(data, where)
    return _face(data, where, int(kind.removeprefix("celeba")))


def stats(part: str, kind: str, outdir: str) -> None:
    weights = "/".join([".data", "metrics", "fid_inception_v3_2015-12-05_pool3_fp16.npz"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = load_fid_inception(weights, device=device)
    with zipfile.ZipFile(part) as archive:
        members = sorted(m for m in archive.namelist() if m.endswith(".jpg"))
        images = np.stack([decode(kind, archive.read(m), f"{part}:{m}") for m in members])
    result = compute_stats(torch.from_numpy(images), net, batch_size=500, device=device)
    stem = Path(outdir) / f"{Path(part).stem}-{kind}"
    Path(outdir).mkdir(parents=True, exist_ok=True)
    rows = np.array_split(result.sum_outer.numpy(), BLOCKS)
    np.savez(f"{stem}.npz", count=result.count, sum=result.sum.numpy(),
             meta=json.dumps({"part": part, "kind": kind, "members": len(members)}))
    for b, block in enumerate(rows):
        np.save(f"{stem}-outer{b}.npy", block)
    print(stem, result.count)


def load(path: str) -> FeatureStats:
    stem = path.removesuffix(".npz")
    head = np.load(path)
    outer = np.concatenate([np.load(f"{stem}-outer{b}.npy") for b in range(BLOCKS)])
    return FeatureStats(int(head["count"]), torch.from_numpy(head["sum"]), torch.from_numpy(outer))


def merge(first: str, second: str) -> None:
    def total(paths: str) -> FeatureStats:
        parts = [load(p) for p in paths.split(",")]
        out = parts[0]
        for part in parts[1:]:
            out = out.merge(part)
        return out

    a, b = total(first), total(second)
    print(f"FID({a.count} vs {b.count} images) = {fid_from_stats(a, b):.4f}")


if __name__ == "__main__":
    verb, *args = sys.argv[1:]
    {"split": lambda: split(args[0], int(args[1]), args[2]),
     "stats": lambda: stats(*args), "merge": lambda: merge(*args)}[verb]()
