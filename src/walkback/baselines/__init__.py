"""Detailed-balance baselines: a learned energy sampled by Metropolis-adjusted Langevin (MALA)."""

from .energy import EnergyMLP, MALAKernel, MALAStep, mh_entropy_production, train_energy_dsm

__all__ = ["EnergyMLP", "MALAKernel", "MALAStep", "mh_entropy_production", "train_energy_dsm"]
