"""The walk-back loss and the variational bound (docs/method.md).

Symbols: ``s_0 = x``, heating path ``q(s_t | s_{t-1})``, cooling ``p_{T_t}(s_{t-1} | s_t)``,
prior ``p*(s_K)``. Every function returns per-step, per-example terms; reduction happens in the
training loop (loss) or in ``metrics.likelihood`` (bits/dim).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from .prior import GaussianPrior
from .streams import Generator
from .trajectory import HeatingPath, Trajectory, walk_away
from .transition import LOG_2PI, TransitionOperator, gaussian_log_prob

__all__ = [
    "Objective", "Decoupled", "objective_from_config", "decoupled_gaussian_nll", "unit_weights",
    "walkback_step_loss", "walkback_loss", "sampled_walkback_loss", "transition_batches",
    "transition_walkback_loss", "perturbed_inputs", "perturbed_var_scale", "negative_bound",
    "BoundResult", "variational_bound",
]

DecoupledScale = Literal["heating", "learned"]


@dataclass(frozen=True)
class Decoupled:
    """``train.objective=decoupled``: the walk-back term with the mean and the variance trained by
    separate terms (``decoupled_gaussian_nll``). ``scale``: the fixed variance ``v_t`` the mean's
    squared error is divided by, ``"heating"`` (the heating step's batch-mean noise variance
    ``T_t var``, detached: one number per step) or ``"learned"`` (the operator's own ``T var`` at
    the example, detached); ``variance_weight``: the weight of the variance's term."""

    scale: DecoupledScale = "heating"
    variance_weight: float = 1.0


Objective = Literal["paper", "released", "decoupled"] | Decoupled


def objective_from_config(train: object) -> Objective:
    """The objective of a ``TrainConfig``: its ``objective`` string, or for ``"decoupled"`` the
    ``Decoupled`` of its ``decoupled_scale`` and ``variance_weight``."""
    name = getattr(train, "objective")
    if name != "decoupled":
        return name
    return Decoupled(getattr(train, "decoupled_scale"), float(getattr(train, "variance_weight")))


def decoupled_gaussian_nll(
    x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, scale: torch.Tensor,
    variance_weight: float = 1.0, weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``-log N(x; mean, diag(var))`` in value, per example ``(B,)``, with decoupled gradients.

    With ``sg`` the stop-gradient and ``w = variance_weight``, per dimension::

        mean term      M = (x - mean)^2 / (2 v)                   v = sg(scale), fixed
        variance term  V = (log(2 pi var) + (x - sg(mean))^2 / var) / 2
        loss           = M - sg(M) + w V + (1 - w) sg(V)

    The value is ``V``, which is the Gaussian NLL. The gradient with respect to ``mean`` is
    ``(mean - x) / v``, whatever ``var`` is, and the gradient with respect to ``var`` is ``w``
    times the NLL's at the given mean. ``scale`` broadcasts against ``x`` (one number per
    example, per step, or per unit). ``weights`` (one per state dimension) weigh both terms per
    unit, as in ``gaussian_log_prob``.
    """
    v = scale.detach().to(x.dtype)
    mean_term = (x - mean).square() / (2 * v)
    var_term = 0.5 * (LOG_2PI + var.log() + (x - mean.detach()).square() / var)
    per_dim = (mean_term - mean_term.detach() + variance_weight * var_term
               + (1 - variance_weight) * var_term.detach())
    if weights is not None:
        per_dim = per_dim * weights
    return per_dim.flatten(1).sum(1)


def unit_weights(
    visible_dim: int, hidden_dim: int, hidden_weight: float, *, device: torch.device | str = "cpu"
) -> torch.Tensor | None:
    """Per-unit weights of the walk-back terms of states ``[v; h]``: 1 for the ``visible_dim``
    visible units, ``hidden_weight`` for the ``hidden_dim`` hidden ones; ``None`` (the plain
    log-density, the bound's term) when there are no hidden units or ``hidden_weight == 1``.

    Why: with ``H >> D`` the hidden terms dominate the sum, and they are smallest for slow,
    small, nearly linear hidden units (docs/RESULTS.md, "Rate network: the hidden units' share of
    the loss").
    """
    if not hidden_dim or hidden_weight == 1:
        return None
    return torch.cat([torch.ones(visible_dim, device=device),
                      torch.full((hidden_dim,), float(hidden_weight), device=device)])


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-example (or scalar) tensor shaped to broadcast against states ``like``."""
    return values.reshape(values.shape + (1,) * (like.dim() - values.dim()))


def walkback_step_loss(
    operator: TransitionOperator,
    s_prev: torch.Tensor,
    s_next: torch.Tensor,
    temperature: float | torch.Tensor,
    objective: Objective = "paper",
    weights: torch.Tensor | None = None,
    heat_var: torch.Tensor | None = None,
    var_scale: float = 1.0,
) -> torch.Tensor:
    """One heating step's walk-back term per example, shape ``(B,)``.

    ``paper``: ``-log p_T(s_{t-1} | s_t)``, the network applied to the later, hotter ``s_t``.
    ``released`` (the 2017 code's loss, docs/method.md): ``-log p_T(s_{t-1} | s_{t-1})``, the network applied to
    the state it is scored on; its optimum is the identity map.
    ``decoupled`` (a ``Decoupled``; the string means its defaults): the paper's term in value,
    its gradient split as in ``decoupled_gaussian_nll``: the mean by the squared error over a
    fixed ``v_t``, the variance by the NLL at the detached mean (docs/method.md). With
    ``scale="heating"``, ``v_t`` is ``heat_var``, the heating step's batch-mean noise variance
    (a scalar or one per example, e.g. ``Trajectory.noise_var[t]``); ``None`` takes the batch
    mean of the operator's own forward step ``T var(s_{t-1}, T)`` (the heating's, for
    ``train.heating=model``), which needs one temperature for the whole batch.
    ``weights`` (one per state dimension, see ``unit_weights``) weigh the per-unit terms; ``None``
    is the plain log-density. ``var_scale`` (``paper`` only) scores ``s_{t-1}`` under the step's
    variance times it (``perturbed_var_scale``).
    """
    if objective == "paper" and var_scale != 1.0:
        step = operator(s_next.detach(), temperature)
        return -gaussian_log_prob(s_prev, step.mean, var_scale * step.total_var, weights)
    if objective == "paper":
        return -operator.log_prob(s_prev, s_next.detach(), temperature, weights)
    if objective == "released":
        return -operator.log_prob(s_prev, s_prev.detach(), temperature, weights)
    if objective == "decoupled":
        objective = Decoupled()
    if not isinstance(objective, Decoupled):
        raise ValueError("objective must be 'paper', 'released', 'decoupled' or a Decoupled, "
                         f"got {objective!r}")
    step = operator(s_next.detach(), temperature)
    var = step.total_var
    if objective.scale == "learned":
        scale = var.detach()
    elif objective.scale == "heating":
        if heat_var is None:
            if isinstance(temperature, torch.Tensor) and temperature.dim() > 0:
                raise ValueError("decoupled scale 'heating' with one temperature per example "
                                 "needs heat_var (the heating's noise variance of each step)")
            with torch.no_grad():
                heat_var = operator(s_prev.detach(), temperature).total_var.mean()
        scale = _broadcast(torch.as_tensor(heat_var, device=s_prev.device), s_prev)
    else:
        raise ValueError(f"decoupled scale must be 'heating' or 'learned', got {objective.scale!r}")
    return decoupled_gaussian_nll(s_prev, step.mean, var, scale,
                                  objective.variance_weight, weights)


def walkback_loss(
    operator: TransitionOperator,
    trajectory: Trajectory,
    temperatures: torch.Tensor,
    objective: Objective = "paper",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """All walk-back terms of a heating path, shape ``(K, B)`` (sum over ``K`` for the loss)."""
    states = trajectory.states
    return torch.stack(
        [
            walkback_step_loss(operator, states[t], states[t + 1], float(temperatures[t]),
                               objective, weights, heat_var=trajectory.noise_var[t])
            for t in range(trajectory.num_steps)
        ]
    )


def sampled_walkback_loss(
    operator: TransitionOperator,
    trajectory: Trajectory,
    temperatures: torch.Tensor,
    num_steps: int,
    *,
    objective: Objective = "paper",
    generator: torch.Generator | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """An unbiased estimate of ``sum_t -log p_{T_t}(s_{t-1} | s_t)`` from ``n = num_steps``
    heating steps drawn without replacement: ``(K / n) * sum_{t in S} term_t``, per example.

    The ``n`` pairs go through the operator as ONE batch of ``n * B`` states, each with its own
    temperature. Returns ``(estimate (B,), steps (n,))``.
    """
    k, batch, device = trajectory.num_steps, trajectory.states.shape[1], trajectory.states.device
    steps = torch.randperm(k, generator=generator, device=device)[:num_steps].sort().values
    index = (steps[:, None] * batch + torch.arange(batch, device=device)).flatten()
    terms = transition_walkback_loss(operator, trajectory, temperatures, index, objective=objective,
                                     weights=weights)
    return terms.view(len(steps), batch).sum(0) * (k / len(steps)), steps


def transition_batches(
    num_steps: int, batch: int, size: int, *, generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> list[torch.Tensor]:
    """The ``K * B`` transitions ``(t, i)`` of a heating path (step ``t``, example ``i``), shuffled
    and cut into minibatches of at most ``size``; each is a flat index ``t * B + i``, and every
    transition appears exactly once."""
    order = torch.randperm(num_steps * batch, generator=generator, device=device)
    return list(order.split(size))


def perturbed_inputs(trajectory: Trajectory, input_noise: float, xi: torch.Tensor) -> torch.Tensor:
    """The walk-back inputs ``s_t + gamma sqrt(v_t) xi_t`` of steps ``t = 1..K``, shape
    ``(K, B, *data_shape)``: each heated state moved by ``gamma = input_noise`` times its heating
    step's batch-mean noise std ``sqrt(v_t)`` (``trajectory.noise_var``) along standard normal
    ``xi`` of the same shape. Trained to map these back to ``s_{t-1}``, the operator removes a
    little more noise than its heating added (input perturbation; docs/method.md)."""
    states = trajectory.states[1:]
    std = trajectory.noise_var.to(states.device, states.dtype).sqrt()
    return states + input_noise * _broadcast(std, states) * xi.to(states.dtype)


def perturbed_var_scale(input_noise: float) -> float:
    """``1 + gamma^2``: the factor by which a perturbed input's walk-back term scales the step's
    variance. For a step small beside the data's spread, ``s_{t-1}`` given ``s~_t`` varies
    ``(1 + gamma^2) v_t``; fitted unscaled, the learned variance would take that in, and since
    the same variance heats the next path, grow by that factor again with every fit. Scaled, its
    best value is ``v_t``, below it for the hotter steps (docs/method.md, "Input perturbation")."""
    return 1.0 + input_noise**2


def transition_walkback_loss(
    operator: TransitionOperator,
    trajectory: Trajectory,
    temperatures: torch.Tensor,
    index: torch.Tensor,
    *,
    objective: Objective = "paper",
    weights: torch.Tensor | None = None,
    inputs: torch.Tensor | None = None,
    var_scale: float = 1.0,
) -> torch.Tensor:
    """Walk-back terms ``-log p_{T_t}(s_{t-1} | s_t)`` of the transitions ``index`` (flat
    ``t * B + i``, from ``transition_batches``) as ONE batch, each with its own temperature
    (``temperatures``: ``(K,)``, or ``(K, B)`` for one per path and step). ``inputs``
    (``(K, B, *data_shape)``, e.g. ``perturbed_inputs``) replaces the states ``s_t`` that the
    operator is applied to; the scored states ``s_{t-1}`` stay the path's; ``var_scale``: see
    ``walkback_step_loss``.

    Returns the terms, shape ``(len(index),)``. ``K`` times their mean is an unbiased estimate of
    the per-path sum ``sum_t -log p_{T_t}(s_{t-1} | s_t)``, whichever transitions are drawn.
    """
    batch = trajectory.states.shape[1]
    t, i = index // batch, index % batch
    s_prev = trajectory.states[t, i]
    s_next = trajectory.states[t + 1, i] if inputs is None else inputs[t, i]
    temps = temperatures.to(s_prev.device, s_prev.dtype)
    temps = temps[t] if temps.dim() == 1 else temps[t, i]
    heat_var = trajectory.noise_var.to(s_prev.device, s_prev.dtype)[t]
    return walkback_step_loss(operator, s_prev, s_next, temps, objective, weights,
                              heat_var=heat_var, var_scale=var_scale)


def negative_bound(
    operator: TransitionOperator,
    prior: GaussianPrior,
    trajectory: Trajectory,
    temperatures: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``-[log p*(s_K) + sum_t log p_{T_t}(s_{t-1}|s_t) - sum_t log q(s_t|s_{t-1})]`` per example,
    shape ``(B,)``: the whole bound of one path, every term a function of the path's states.
    Returned with its walk-back terms ``-log p_{T_t}(s_{t-1}|s_t)``, shape ``(K, B)``.

    With a reparameterised path (``walk_away(..., reparameterized=True)``) its gradient is the
    pathwise gradient of the bound, including the terms the paper's loss drops: the heating's
    entropy and the prior's density at the end point, which reward a heating that destroys
    information instead of one the walk back can invert trivially. The prior's moments are
    buffers (fitted, not trained); gradients reach the end point ``s_K`` through ``log p*``.
    """
    log_p = torch.stack([
        operator.log_prob(trajectory.states[t], trajectory.states[t + 1], float(temperatures[t]))
        for t in range(trajectory.num_steps)
    ])
    total = -(prior.log_prob(trajectory.states[-1]) + log_p.sum(0) - trajectory.log_q.sum(0))
    return total, -log_p


@dataclass
class BoundResult:
    """Variational bound on ``log p(x)`` in nats, per example.

    ``log_bound``: importance-weighted bound ``log (1/M) sum_m w_m``, shape ``(B,)``;
    ``elbo``: the plain bound (mean of ``log w_m`` over paths), ``(B,)``;
    ``step_terms``: ``log p(s_{t-1}|s_t) - log q(s_t|s_{t-1})`` averaged over paths, ``(K, B)``;
    ``prior_term``: ``log p*(s_K)`` averaged over paths, ``(B,)``; ``num_paths``: ``M``.
    """

    log_bound: torch.Tensor
    elbo: torch.Tensor
    step_terms: torch.Tensor
    prior_term: torch.Tensor
    num_paths: int


@torch.no_grad()
def variational_bound(
    operator: TransitionOperator,
    prior: GaussianPrior,
    heating: HeatingPath,
    temperatures: torch.Tensor,
    x: torch.Tensor,
    *,
    num_paths: int = 1,
    generator: Generator = None,
) -> BoundResult:
    """``log w = log p*(s_K) + sum_t log p_{T_t}(s_{t-1}|s_t) - sum_t log q(s_t|s_{t-1})`` over
    ``M = num_paths`` independent heating paths; returns the IW bound and its parts."""
    log_w, step_terms, prior_terms = [], [], []
    for _ in range(num_paths):
        path = walk_away(heating, x, generator=generator)
        log_p = -walkback_loss(operator, path, temperatures, "paper")
        steps = log_p - path.log_q
        prior_term = prior.log_prob(path.states[-1])
        log_w.append(prior_term + steps.sum(0))
        step_terms.append(steps)
        prior_terms.append(prior_term)
    log_w_all = torch.stack(log_w)
    return BoundResult(
        log_bound=torch.logsumexp(log_w_all, 0) - math.log(num_paths),
        elbo=log_w_all.mean(0),
        step_terms=torch.stack(step_terms).mean(0),
        prior_term=torch.stack(prior_terms).mean(0),
        num_paths=num_paths,
    )
