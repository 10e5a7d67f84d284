"""Diffusion and score-based models: schedules, SDEs, samplers and solvers (all lax.scan)."""
