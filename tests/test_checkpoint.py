"""Checkpoints: round trips (tensors, meta, optimizer), every bad file refused with an error that
names it, atomic writes, and save_pretrained / load."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import walkback
from walkback.atomic import _atomic_write, atomic_write_text
from walkback.checkpoint import (
    Checkpoint, latest_checkpoint, list_checkpoints, load_checkpoint, optimizer_from_tensors,
    optimizer_to_tensors, prune_checkpoints, save_checkpoint,
)
from walkback.config import Config, apply_overrides, config_to_dict
from walkback.errors import CheckpointError
from walkback.model import MODEL_FILE, build_model


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "model.w": torch.randn(4, 3, generator=gen),
        "model.d": torch.randn(5, dtype=torch.float64, generator=gen),
        "ema.n": torch.tensor(7),
        "rng.generator": torch.Generator().manual_seed(3).get_state(),
        "model.scalar": torch.tensor(2.5),
    }


def _save(tmp_path: Path, step: int = 12) -> Path:
    meta = {"config": config_to_dict(Config()), "note": "hello", "nested": {"a": [1, 2.5, None]}}
    return save_checkpoint(tmp_path, step, Checkpoint(_tensors(), meta))


def test_round_trip_tensors_and_meta(tmp_path: Path) -> None:
    sidecar = _save(tmp_path)
    assert sidecar == tmp_path / "ckpt_00000012.json"
    assert sidecar.with_suffix(".safetensors").is_file()
    for path in (sidecar, sidecar.with_suffix(".safetensors")):
        ckpt = load_checkpoint(path)
        assert set(ckpt.tensors) == set(_tensors())
        for key, value in _tensors().items():
            assert ckpt.tensors[key].dtype == value.dtype and torch.equal(ckpt.tensors[key], value)
        assert ckpt.meta["step"] == 12 and ckpt.meta["note"] == "hello"
        assert ckpt.meta["nested"] == {"a": [1, 2.5, None]}
        assert ckpt.meta["config"] == config_to_dict(Config())
        assert len(ckpt.meta["sha256"]) == 64
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_list_latest_and_prune(tmp_path: Path) -> None:
    for step in (5, 10, 15, 20):
        _save(tmp_path, step)
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"ckpt_{s:08d}.json" for s in (5, 10, 15, 20)]
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt_00000020.json"
    prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt_00000015.json", "ckpt_00000015.safetensors", "ckpt_00000020.json", "ckpt_00000020.safetensors",
    ]
    assert latest_checkpoint(tmp_path / "empty") is None


def test_optimizer_state_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99))
    data = torch.randn(16, 3)
    for _ in range(3):
        opt.zero_grad()
        model(data).square().mean().backward()
        opt.step()
    tensors, meta = optimizer_to_tensors(opt)
    sidecar = save_checkpoint(tmp_path, 3, Checkpoint(
        {**tensors, **{f"model.{k}": v for k, v in model.state_dict().items()}}, {"optimizer": meta}))
    ckpt = load_checkpoint(sidecar)

    clone = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    clone.load_state_dict({k[6:]: v for k, v in ckpt.tensors.items() if k.startswith("model.")})
    opt2 = torch.optim.Adam(clone.parameters(), lr=0.5)
    optimizer_from_tensors(opt2, ckpt.tensors, ckpt.meta["optimizer"])
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["state"].keys() == s2["state"].keys() and len(s1["state"]) == 4
    for index, per_param in s1["state"].items():
        assert per_param.keys() == s2["state"][index].keys()
        for name, value in per_param.items():
            assert torch.equal(value, s2["state"][index][name]), (index, name)
    group1, group2 = s1["param_groups"][0], s2["param_groups"][0]
    assert group2["lr"] == 1e-2 and tuple(group2["betas"]) == (0.8, 0.99)
    assert {k: v for k, v in group1.items() if k != "betas"} == {k: v for k, v in group2.items() if k != "betas"}
    # the restored optimizer continues exactly like the original
    for m, o in ((model, opt), (clone, opt2)):
        o.zero_grad()
        m(data).square().mean().backward()
        o.step()
    for p, q in zip(model.parameters(), clone.parameters()):
        assert torch.equal(p, q)


def test_truncated_safetensors_is_refused_naming_the_file(tmp_path: Path) -> None:
    weights = _save(tmp_path).with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=str(weights.name)):
        load_checkpoint(weights)


def test_truncated_safetensors_with_matching_checksum_is_refused(tmp_path: Path) -> None:
    """Even when the sidecar's checksum matches (a sidecar rewritten for a broken file), the
    unreadable file gives a CheckpointError that names it, not a SafetensorError."""
    sidecar = _save(tmp_path)
    weights = sidecar.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:40])
    meta = json.loads(sidecar.read_text())
    meta["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=str(weights.name)):
        load_checkpoint(sidecar)


@pytest.mark.parametrize("text", ['{"step": 12, "sha2', "", "not json at all", "[1, 2]", '{"step": 1}'])
def test_corrupt_json_sidecar_is_refused_naming_the_file(tmp_path: Path, text: str) -> None:
    sidecar = _save(tmp_path)
    sidecar.write_text(text)
    with pytest.raises(CheckpointError, match=sidecar.name):
        load_checkpoint(sidecar)


def test_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    sidecar = _save(tmp_path)
    sidecar.with_suffix(".safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"ckpt_00000012\.safetensors"):
        load_checkpoint(sidecar)


def test_flipped_payload_byte_is_a_checksum_mismatch(tmp_path: Path) -> None:
    sidecar = _save(tmp_path)
    weights = sidecar.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # inside the tensor payload (the header comes first)
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"checksum mismatch") as info:
        load_checkpoint(sidecar)
    assert weights.name in str(info.value)


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    atomic_write_text(target, "old contents")

    def failing_write(handle) -> None:
        handle.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _atomic_write(target, failing_write)
    assert target.read_text() == "old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # temp file removed
    atomic_write_text(target, "new contents")
    assert target.read_text() == "new contents"


def _tiny_config() -> Config:
    return apply_overrides(Config(), ["mlp.hidden=16", "mlp.depth=2", "schedule.num_steps=5"])


def test_save_pretrained_and_load_give_identical_samples(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(_tiny_config())
    with torch.no_grad():  # move away from the zero-initialised head so the test is not trivial
        model.operator.backbone.head.weight.normal_(0, 0.3)
        model.prior.mean.fill_(0.25)
        model.num_active.fill_(4)
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / MODEL_FILE).is_file() and (tmp_path / "saved" / "config.json").is_file()
    loaded = walkback.load(tmp_path / "saved")
    assert loaded.config == model.config and int(loaded.num_active) == 4
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    a = model.sample(50, extra_steps=2, generator=torch.Generator().manual_seed(9))
    b = loaded.sample(50, extra_steps=2, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a.samples, b.samples) and torch.equal(a.states, b.states)


def test_a_model_folder_of_the_old_config_layout_loads_the_same_network(tmp_path: Path) -> None:
    """A rate network saved when its keys were in ``model`` (its leak as ``model.alpha``): the
    folder loads to the same config, weights, operator outputs and samples."""
    from conftest import old_layout
    from walkback.presets import get_preset

    config = apply_overrides(get_preset("mog-rate"), ["rate.hidden_units=6", "rate.leak=0.3",
                                                      "rate.gain=1.2", "schedule.num_steps=5"])
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():
        model.operator.backbone.W.normal_(0, 0.4)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(old_layout(saved), indent=2))
    assert json.loads((tmp_path / "config.json").read_text())["model"]["alpha"] == 0.3
    loaded = walkback.load(tmp_path)
    assert loaded.config == config and loaded.operator.alpha == model.operator.alpha
    assert loaded.hidden_dim == 6 and loaded.relax_steps == model.relax_steps
    _assert_equal(loaded.state_dict(), model.state_dict())
    s = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    a, b = model.operator(s, 3.0), loaded.operator(s, 3.0)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.var, b.var)
    x = model.sample(20, generator=torch.Generator().manual_seed(2))
    y = loaded.sample(20, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x.samples, y.samples)


def test_load_refuses_a_truncated_model_file_naming_it(tmp_path: Path) -> None:
    build_model(_tiny_config()).save_pretrained(tmp_path)
    weights = tmp_path / MODEL_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=MODEL_FILE):
        walkback.load(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="config.json"):
        walkback.load(tmp_path)


# ---------------------------------------------------------------- files copied back in pieces


def test_a_model_copied_back_in_pieces_is_named_with_the_join_command(tmp_path: Path) -> None:
    """experiments/gpu split files over 15 MiB with ``split -b 15M -d``: a folder that still holds
    the pieces is refused with the ``cat`` command that joins them, and joined it loads."""
    import subprocess

    model = build_model(apply_overrides(Config(), ["mlp.hidden=64"]))
    model.save_pretrained(tmp_path)
    weights = tmp_path / MODEL_FILE
    subprocess.run(["split", "-b", "4K", "-d", weights.name, f"{weights.name}.part"], cwd=tmp_path,
                   check=True)
    assert (tmp_path / f"{MODEL_FILE}.part01").is_file()
    weights.unlink()
    with pytest.raises(CheckpointError) as caught:
        walkback.load(tmp_path)
    message = str(caught.value)
    command = message.split("`")[1]
    assert message.startswith(f"{weights}: file not found") and "\n" not in message
    assert command == f"cat {MODEL_FILE}.part?? > {MODEL_FILE}"
    subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True)
    _assert_equal(walkback.load(tmp_path).state_dict(), model.state_dict())


def test_a_checkpoint_copied_back_in_pieces_is_named_with_the_join_command(tmp_path: Path) -> None:
    sidecar = _save(tmp_path)
    weights = sidecar.with_suffix(".safetensors")
    payload = weights.read_bytes()
    (tmp_path / f"{weights.name}.part00").write_bytes(payload[:100])
    (tmp_path / f"{weights.name}.part01").write_bytes(payload[100:])
    weights.unlink()
    with pytest.raises(CheckpointError, match=rf"checkpoint file not found \(copied in pieces "
                                              rf".*`cat {weights.name}\.part\?\? > {weights.name}`"):
        load_checkpoint(sidecar)
    weights.write_bytes(payload)
    _assert_equal(load_checkpoint(sidecar).tensors, _tensors())


def _assert_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
