"""``Walkback``: operator + prior + heating schedule, saved and loaded together.

``save_pretrained(dir)`` writes ``model.safetensors`` and ``config.json``; ``load(path)`` reads
either such a folder or a run folder (its ``model/`` subfolder, written at the end of training).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes, save as save_bytes
from torch import nn

from .atomic import atomic_write_bytes, atomic_write_text, split_copy_hint
from .config import Config, config_from_saved, config_to_dict
from .data.images import CELEBA_DEFAULT_RESOLUTION
from .data.toy import TOY_DATASETS
from .diffusion import DiffusionOperator, grid_betas, sampling_levels, vp_alphas_bar
from .errors import CheckpointError, ConfigError
from .models import Conv2017Backbone, MLPBackbone, RateNetworkBackbone, UNetBackbone
from .prior import GaussianPrior, LowRankGaussianPrior, MixturePrior
from .sampler import SampleResult, anneal
from .schedule import fixed_diffusion_betas, heating_temperatures
from .trajectory import FixedDiffusionHeating, HeatingPath, OperatorHeating, walk_away
from .transition import TransitionOperator

__all__ = ["Walkback", "build_model", "load", "data_shape_of", "state_shape_of", "start_part_way"]

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CHECKSUM_FILE = "model.safetensors.sha256"
START_PRIOR_FILE = "start_prior.safetensors"  # the prior of a part-way start (start_step > 0)
START_FIT_POINTS = 10000  # training points heated to fit the prior of a part-way start
START_FIT_SEED_OFFSET = 5  # the fit's generator is seeded seed + 5, apart from the chains'


IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist": (1, 28, 28), "cifar10": (3, 32, 32), "svhn": (3, 32, 32),
}


def data_shape_of(config: Config) -> tuple[int, ...]:
    """The state shape of the configured data set: 2-D points for toys, ``(C, H, W)`` images."""
    name = config.data.name
    if name in TOY_DATASETS:
        return (2,)
    if name == "celeba":
        side = config.data.resolution or CELEBA_DEFAULT_RESOLUTION
        return (3, side, side)
    return IMAGE_SHAPES[name]


def state_shape_of(config: Config) -> tuple[int, ...]:
    """The operator's state shape: the data shape, or ``(D + H,)`` for the rate network (its
    state ``[v; h]`` holds ``H = rate.hidden_units`` hidden units after the ``D`` visible ones)."""
    shape = data_shape_of(config)
    if config.model.backbone == "rate":
        return (math.prod(shape) + config.rate.hidden_units,)
    return shape


def build_backbone(config: Config, shape: tuple[int, ...]) -> nn.Module:
    """The configured backbone ``(s, cond) -> (F, G)`` for states of ``shape``."""
    m = config.model
    cond_dim = m.cond_dim if m.form == "conditioned" else 0
    if m.backbone == "rate":
        # form "conditioned": log T as a neuromodulatory input current (RateNetworkBackbone)
        r = config.rate
        return RateNetworkBackbone(shape[0] - r.hidden_units, r.hidden_units,
                                   symmetric=r.symmetric, init_var=m.init_var, gain=r.gain,
                                   cond_dim=cond_dim, inner_steps=r.inner_steps, leak=r.leak,
                                   input_scale=r.input_scale)
    if m.backbone == "mlp":
        return MLPBackbone(shape, hidden=config.mlp.hidden, depth=config.mlp.depth,
                           cond_dim=cond_dim, init_var=m.init_var)
    if len(shape) != 3:
        raise ConfigError(f"config key model.backbone: {m.backbone!r} needs image data, got {shape}")
    if m.backbone == "unet":
        u = config.unet
        mults = tuple(int(v) for v in u.channel_mults.split(","))
        return UNetBackbone(shape, channels=u.channels, channel_mults=mults,
                            num_res_blocks=u.num_res_blocks, dropout=u.dropout,
                            cond_dim=cond_dim, init_var=m.init_var)
    return Conv2017Backbone(shape, num_steps=config.schedule.num_steps, cond_dim=cond_dim,
                            init_var=m.init_var)


class Walkback(nn.Module):
    """A trained Variational Walkback model: ``operator``, ``prior`` and heating temperatures.

    ``temperatures`` holds all ``K`` configured heating temperatures; ``num_active`` how many
    are used (smaller than ``K`` when the ``sigma2_max`` stop rule ended heating early).

    States and data: with ``hidden_dim = H > 0`` (the rate network) the operator and the prior
    act on full states ``s = [v; h]`` of ``D + H`` units while data ``x`` has ``D``: ``lift``
    maps data to a starting state (``h`` relaxed for ``relax_steps`` steps at ``T = 1`` with
    ``v`` clamped to ``x``) and ``visible`` maps states back to data space. With ``H = 0`` both
    are the identity (``lift`` returns ``x`` itself and draws no random numbers).
    """

    temperatures: torch.Tensor
    num_active: torch.Tensor

    def __init__(
        self, operator: TransitionOperator, prior: GaussianPrior, temperatures: torch.Tensor,
        *, heating: str = "model", config: Config | None = None, hidden_dim: int = 0,
        relax_steps: int = 0,
    ) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.relax_steps = relax_steps
        self.operator = operator
        self.prior = prior
        self.heating = heating
        self.config = config
        self.register_buffer("temperatures", temperatures.to(torch.float64))
        self.register_buffer("num_active", torch.tensor(len(temperatures)))
        # the heating step of a part-way start and its prior ((0, None): none), saved beside the
        # weights, not in the state dict (a tuple, so that the prior is not a submodule)
        self._start: tuple[int, GaussianPrior | None] = (0, None)

    @property
    def start_step(self) -> int:
        """The heating step sampling starts from by default (0: the top, ``K``)."""
        return self._start[0]

    @property
    def start_prior(self) -> GaussianPrior | None:
        """The prior fitted to the training data heated ``start_step`` steps (``None``: none)."""
        return self._start[1]

    @property
    def active_temperatures(self) -> torch.Tensor:
        """Heating temperatures ``T_1..T_K`` in use (``K = num_active``)."""
        return self.temperatures[: int(self.num_active)].cpu()

    def heating_path(self, temperatures: torch.Tensor | None = None, *,
                     forward: Callable | None = None) -> HeatingPath:
        """The inference path ``q`` at ``temperatures`` (default: the active ones): the operator
        heated (VW; ``forward``: what computes its steps, see ``OperatorHeating``) or a fixed
        Gaussian diffusion (the ``heating=fixed`` ablation)."""
        temps = self.active_temperatures if temperatures is None else temperatures
        if self.heating == "fixed":
            return FixedDiffusionHeating(fixed_diffusion_betas(temps))
        if self.heating == "vp":  # the DDPM: its forward process on the sampling levels
            return FixedDiffusionHeating(grid_betas(self.operator.alphas_bar, temps))
        return OperatorHeating(self.operator, temps, forward)

    @property
    def visible_dim(self) -> int:
        """Number of visible units ``D`` of a flat state (the data's size)."""
        return math.prod(self.operator.data_shape) - self.hidden_dim

    def visible(self, s: torch.Tensor) -> torch.Tensor:
        """The data part of states ``s``: ``s`` itself, or ``s[:, :D]`` with hidden units."""
        return s[:, : self.visible_dim] if self.hidden_dim else s

    @torch.no_grad()
    def lift(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """The state that heating starts from for data ``x``: ``x`` itself without hidden units;
        else ``s = [x; 0]`` followed by ``relax_steps`` operator steps at ``T = 1``, each with
        the visible part reset to ``x`` (docs/method.md: hidden units relax with ``v`` clamped)."""
        if not self.hidden_dim:
            return x
        d = self.visible_dim
        s = torch.cat([x.flatten(1), x.new_zeros(x.shape[0], self.hidden_dim)], dim=1)
        for _ in range(self.relax_steps):
            s = self.operator.sample(s, 1.0, generator=generator)
            s[:, :d] = x.flatten(1)
        return s

    def sample(
        self, num_samples: int, *, extra_steps: int = 0, extra_temperature: float = 1.0,
        batch_size: int | None = None, generator: torch.Generator | None = None,
        start_step: int | None = None, noise_scale: float = 1.0,
    ) -> SampleResult:
        """Anneal from the prior through ``T_K..T_1`` then ``extra_steps`` steps at
        ``T_E = extra_temperature`` (1 by default); returns the visible parts of the last step's
        means (``samples``) and of the final states (``states``); use ``sampler.anneal`` on
        ``operator`` and ``prior`` for full states. ``noise_scale``: the cooling steps' noise
        standard deviation times this (``sampler.anneal_progressive``).

        ``start_step``: start part-way up, at heating step ``S``, from the saved start prior
        (``fit_start_prior``); default: the saved start step, if any, else the top (``K``)."""
        model = self.start_at(self.start_step if start_step is None else start_step)
        result = anneal(
            model.operator, model.prior, model.active_temperatures, num_samples,
            extra_steps=extra_steps, extra_temperature=extra_temperature,
            noise_scale=noise_scale, batch_size=batch_size, generator=generator,
        )
        if not self.hidden_dim:
            return result
        return SampleResult(self.visible(result.samples), self.visible(result.states))

    @torch.no_grad()
    def start_at(
        self, step: int, x: torch.Tensor | None = None, *, batch_size: int = 1000,
        generator: torch.Generator | None = None, rank: int = 0, components: int = 0,
    ) -> Walkback:
        """A model whose chains start part-way up the heating, at step ``step`` (``1..K``).

        The result shares this model's operator. Its prior is a Gaussian fit to the data ``x``
        heated ``step`` steps (diagonal; with ``rank`` > 0 principal directions of the heated
        points' covariance besides, ``LowRankGaussianPrior``; or with ``components`` > 1 a
        mixture of that many diagonal Gaussians, ``MixturePrior``), or without ``x`` the saved start
        prior of that step (``fit_start_prior``). Its cooling runs ``T_step .. T_1``, so a chain
        takes ``step`` annealing steps instead of ``K``, and the saved steps can go to ``T = 1``.
        Without ``x``, ``step`` 0 is this model itself (the prior learned in training), and so
        is ``K`` unless a prior of step ``K`` is saved: the top prior refit to this operator's
        own heating end points (``sample.start_step = K``, ``walkback fit-prior --start-step
        K``). With ``x``, ``step = K`` refits the prior from ``x``. The result is for sampling
        and evaluation.
        """
        k = len(self.active_temperatures)
        if x is None and (step == 0 or (step == k and self.start_step != k)):
            return self
        if not 1 <= step <= k:
            raise ConfigError(f"start step {step}: must be in 1..K = {k}")
        if self.heating != "model":
            raise ConfigError(f"start step {step}: needs the operator's own heating, not "
                              f"heating={self.heating!r} (its noise rates depend on K)")
        temps = self.active_temperatures[:step]
        if x is None:
            if self.start_prior is None or self.start_step != step:
                saved = f"the saved one is for step {self.start_step}" if self.start_step else \
                    "none is saved"
                raise ConfigError(f"start step {step}: no prior fitted for it ({saved}); run "
                                  f"`walkback fit-prior --run-dir RUN --start-step {step}`, which "
                                  "reads the training data once")
            return Walkback(self.operator, self.start_prior, temps, heating=self.heating,
                            hidden_dim=self.hidden_dim,
                            relax_steps=self.relax_steps).to(self.prior.mean.device)
        if rank > self.prior.mean.numel():
            raise ConfigError(f"start prior rank {rank}: at most the state's size "
                              f"{self.prior.mean.numel()}")
        if rank and components > 1:
            raise ConfigError(f"start prior: rank {rank} or {components} components, not both")
        if components > len(x):
            raise ConfigError(f"start prior: {components} components for {len(x)} points")
        heating = self.heating_path(temps)
        ends = [walk_away(heating, self.lift(b, generator=generator), generator=generator).states[-1]
                for b in x.split(batch_size)]
        device = self.prior.mean.device
        prior = _start_prior(self.prior.data_shape, self.prior.min_var, rank=rank,
                             components=components).to(device)
        if isinstance(prior, MixturePrior):
            prior.fit(torch.cat(ends).float(), generator=generator)
        else:
            prior.fit(torch.cat(ends).float())
        return Walkback(self.operator, prior, temps, heating=self.heating,
                        hidden_dim=self.hidden_dim, relax_steps=self.relax_steps).to(device)

    def bound_model(self) -> Walkback:
        """The model whose variational bound the evaluation reports: this one, or for the DDPM
        its ancestral chain on all ``diffusion.levels`` (the bound of the coarse sampling grid
        is far looser, docs/method.md "Baselines"). Shares the operator's weights."""
        op = self.operator
        if self.heating != "vp":
            return self
        levels = torch.arange(1, op.num_levels + 1, dtype=torch.float64)
        full = DiffusionOperator(op.backbone, op.data_shape, op.alphas_bar, levels,
                                 cond_dim=op.cond_dim, eta=1.0, clip=op.clip)
        return Walkback(full, self.prior, levels, heating="vp").to(self.prior.mean.device)

    def fit_start_prior(self, step: int, train: torch.Tensor, *, seed: int,
                        batch_size: int = 1000, rank: int = 0, components: int = 0) -> None:
        """Fit and keep the prior of a part-way start at heating step ``step``: ``start_part_way``
        on ``train`` (model space); ``save_pretrained`` then writes it beside the weights."""
        started = start_part_way(self, train, step, seed=seed, batch_size=batch_size, rank=rank,
                                 components=components)
        self._start = (step, started.prior)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``model.safetensors``, its sha256 and ``config.json``, each atomically."""
        if self.config is None:
            raise ValueError("save_pretrained needs the model's config")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = save_bytes({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()})
        atomic_write_bytes(directory / MODEL_FILE, payload)
        atomic_write_text(directory / CHECKSUM_FILE, hashlib.sha256(payload).hexdigest() + "\n")
        atomic_write_text(directory / CONFIG_FILE, json.dumps(config_to_dict(self.config), indent=2))
        if self.start_prior is not None:
            self.save_start_prior(directory)

    def save_start_prior(self, directory: str | Path) -> None:
        """Write the start prior (``start_prior.safetensors``: its mean, variance and step, and
        the factor of a low-rank prior, the components of a mixture)."""
        assert self.start_prior is not None
        tensors = {name: buffer.detach().cpu().contiguous()
                   for name, buffer in self.start_prior.named_buffers()}
        tensors["start_step"] = torch.tensor([self.start_step])
        payload = save_bytes(tensors)
        atomic_write_bytes(Path(directory) / START_PRIOR_FILE, payload)

    def _load_start_prior(self, path: Path) -> None:
        try:
            tensors = load_bytes(path.read_bytes())
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: unreadable start prior ({exc})") from None
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        want, dim = tuple(self.prior.data_shape), self.prior.mean.numel()
        factor, parts = shapes.get("factor", ()), shapes.get("component_mean", ())
        rank = factor[0] if len(factor) == 2 and factor[1] == dim else 0
        components = parts[0] if len(parts) > 1 and parts[0] > 1 else 0
        prior = _start_prior(want, self.prior.min_var, rank=rank, components=components)
        expected = {name: tuple(buffer.shape) for name, buffer in prior.named_buffers()}
        if "start_step" not in shapes or {**expected, "start_step": shapes["start_step"]} != shapes:
            raise CheckpointError(f"{path}: not a start prior of this model's shape {want}")
        prior.load_state_dict({k: v for k, v in tensors.items() if k != "start_step"})
        step = int(tensors["start_step"].flatten()[0])
        if not 1 <= step <= len(self.active_temperatures):
            raise CheckpointError(f"{path}: start step {step} outside 1..K")
        self._start = (step, prior.to(self.prior.mean.device))

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str = "cpu") -> Walkback:
        """Rebuild a model saved by ``save_pretrained``."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / MODEL_FILE
        if not config_path.is_file():
            raise CheckpointError(f"{config_path}: file not found")
        if not weights_path.is_file():
            raise CheckpointError(f"{weights_path}: file not found{split_copy_hint(weights_path)}")
        try:
            config = config_from_saved(json.loads(config_path.read_text()))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{config_path}: not valid JSON ({exc.msg})") from None
        payload = weights_path.read_bytes()
        checksum = directory / CHECKSUM_FILE
        if checksum.is_file() and checksum.read_text().strip() != hashlib.sha256(payload).hexdigest():
            raise CheckpointError(f"{weights_path}: checksum mismatch with {checksum.name} (a corrupt "
                                  "file, or training was killed between writing the two: "
                                  "`walkback train --resume` rewrites both)")
        try:
            state = {k: v.to(device) for k, v in load_bytes(payload).items()}
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{weights_path}: unreadable safetensors file ({exc})") from None
        model = build_model(config).to(device)
        load_state(model, state, weights_path)
        if (directory / START_PRIOR_FILE).is_file():
            model._load_start_prior(directory / START_PRIOR_FILE)
        return model


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """``load_state_dict`` with a one-line error naming ``source`` on any mismatch."""
    expected = model.state_dict()
    if set(state) != set(expected):
        missing = sorted(set(expected) - set(state))[:3]
        extra = sorted(set(state) - set(expected))[:3]
        raise CheckpointError(f"{source}: tensors do not match the model (missing {missing}, extra {extra})")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(f"{source}: tensor {key} has shape {tuple(value.shape)}, "
                                  f"expected {tuple(expected[key].shape)}")
    model.load_state_dict(state)


def unit_min_var(config: Config, shape: tuple[int, ...]) -> float | torch.Tensor:
    """``model.min_var``, or per-unit floors where the rate network's hidden units have their own
    (``rate.hidden_min_var``)."""
    m, r = config.model, config.rate
    if m.backbone != "rate" or r.hidden_min_var <= m.min_var or not r.hidden_units:
        return m.min_var
    floors = torch.full(shape, m.min_var)
    floors[shape[0] - r.hidden_units:] = r.hidden_min_var
    return floors


def _build_ddpm(config: Config) -> Walkback:
    """The DDPM baseline: a ``DiffusionOperator`` over the configured backbone, the sampling
    levels as temperatures, the VP forward process as heating, and the prior ``N(0, I)``."""
    shape, d = state_shape_of(config), config.diffusion
    alphas_bar = vp_alphas_bar(d.levels, d.beta_schedule, beta_start=d.beta_start,
                               beta_end=d.beta_end)
    levels = sampling_levels(d.levels, config.schedule.num_steps)
    operator = DiffusionOperator(build_backbone(config, shape), shape, alphas_bar, levels,
                                 cond_dim=config.model.cond_dim, eta=d.eta, clip=d.clip)
    return Walkback(operator, GaussianPrior(shape), levels, heating="vp", config=config)


def build_model(config: Config) -> Walkback:
    """A freshly initialised ``Walkback`` for ``config`` (prior at N(0, I) until fitted)."""
    if config.method == "ddpm":
        return _build_ddpm(config)
    shape = state_shape_of(config)
    m, s, r = config.model, config.schedule, config.rate
    rate = m.backbone == "rate"
    temps = heating_temperatures(s.num_steps, t0=s.t0, factor=s.factor, n1=s.n1)
    # noise_scale "beta" (the default under heating=fixed): steps in units of the fixed
    # diffusion's beta_t = c T_t
    beta = m.noise_scale == "beta" or (m.noise_scale == "auto" and config.train.heating == "fixed")
    var_scale = float(fixed_diffusion_betas(temps)[0] / temps[0]) if beta else 1.0
    # the rate network: rate.leak is the leak a, mean = (1 - a) s + a phi(W s + b)
    operator = TransitionOperator(
        build_backbone(config, shape), shape, form=m.form, alpha=1 - r.leak if rate else m.alpha,
        min_var=unit_min_var(config, shape), cond_dim=m.cond_dim, mean_scale=m.mean_scale,
        var_scale=var_scale, min_var_at_1=m.min_var_at_1 or None,
        top_temperature=float(temps.max()),
        temperatures=temps if m.mean_scale == "denoise" else None, clip=m.denoised_clip,
    )
    return Walkback(operator, GaussianPrior(shape), temps, heating=config.train.heating, config=config,
                    hidden_dim=r.hidden_units if rate else 0,
                    relax_steps=r.relax_steps if rate else 0)


def load(path: str | Path, *, device: str = "cpu") -> Walkback:
    """Load a model from a ``save_pretrained`` folder or a run folder (its EMA weights)."""
    path = Path(path)
    if (path / "model").is_dir() or (path / "metrics.jsonl").exists():
        path = path / "model"  # a run folder
    return Walkback.from_pretrained(path, device=device)


def start_part_way(model: Walkback, train: torch.Tensor, step: int, *, seed: int,
                   batch_size: int, rank: int = 0, components: int = 0) -> Walkback:
    """``model.start_at(step, ...)`` with the prior (of ``rank`` or ``components``) fit to the first
    ``START_FIT_POINTS`` of ``train`` (model space), heated on the model's device with a
    generator seeded ``seed + START_FIT_SEED_OFFSET``: what training's end, ``fit-prior`` and
    ``evaluate --start-step`` share."""
    x = train[:START_FIT_POINTS].to(model.prior.mean.device)
    generator = torch.Generator(x.device).manual_seed(seed + START_FIT_SEED_OFFSET)
    return model.start_at(step, x, batch_size=batch_size, generator=generator, rank=rank,
                          components=components)


def _start_prior(shape: tuple[int, ...], min_var: float, *, rank: int = 0,
                 components: int = 0) -> GaussianPrior:
    """An unfitted start prior: diagonal, with ``rank`` principal directions, or a mixture of
    ``components`` diagonal Gaussians."""
    if components > 1:
        return MixturePrior(shape, components, min_var=min_var)
    if rank:
        return LowRankGaussianPrior(shape, rank, min_var=min_var)
    return GaussianPrior(shape, min_var=min_var)


def num_parameters(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
