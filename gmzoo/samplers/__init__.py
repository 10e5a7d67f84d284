"""Every sampler in the zoo, in one place, with one signature.

A sampler is a pure function, one ``lax.scan`` or a short loop, never jitted inside (the
caller jits):

    sampler(fn, key, x_init, <process, grid: positional-or-keyword>, *, settings) -> x

- ``fn``, the model: a function of the state (``eps_fn(x, t)``, ``score_fn(x, t)``,
  ``energy_fn(x)``) or, where the model is its parameters, ``params`` (the VAEs, which take
  ``apply_fn`` as a setting, and the RBM);
- ``key``, a typed key, split inside into one subkey per step and never reused.
  :func:`ode_sample` is deterministic: it takes a key only to share the signature, ignores
  it and accepts None;
- ``x_init``, where the chain starts, ``[B, ...]`` (noise ``x_T``, chain starts ``x0`` or
  ``v0``), or ``n``, how many samples to draw, for the samplers that draw their own start from
  a prior (the VAEs);
- then the process and its grid, when there is one (a ``Schedule``; an ``SDE`` and a
  decreasing time grid ``ts`` from :func:`time_grid`);
- then keyword-only settings (step counts, step sizes, ``return_trajectory``, ...).

| sampler                   | samples                         | fn               | process, grid | lives in                      | paper, equation                 |
|---------------------------|---------------------------------|------------------|---------------|-------------------------------|---------------------------------|
| `ddpm_ancestral`          | x_0, T ancestral steps          | `eps_fn(x, t)`   | `schedule`    | `gmzoo.diffusion.samplers`    | Ho et al. 2020, Alg. 2          |
| `ddim`                    | x_0, num_steps steps (eta)      | `eps_fn(x, t)`   | `schedule`    | `gmzoo.diffusion.samplers`    | Song, Meng & Ermon 2021, eq. 12 |
| `euler_maruyama`          | x_0, reverse SDE                | `score_fn(x, t)` | `sde, ts`     | `gmzoo.diffusion.solvers`     | Song et al. 2021, eq. 6         |
| `reverse_diffusion`       | x_0, reverse SDE                | `score_fn(x, t)` | `sde, ts`     | `gmzoo.diffusion.solvers`     | Song et al. 2021, App. E        |
| `pc_sampler`              | x_0, reverse SDE + Langevin     | `score_fn(x, t)` | `sde, ts`     | `gmzoo.diffusion.solvers`     | Song et al. 2021, Alg. 1        |
| `ode_sample`              | x_0, probability flow ODE       | `score_fn(x, t)` | `sde, ts`     | `gmzoo.diffusion.solvers`     | Song et al. 2021, eq. 13        |
| `sample_vae`              | x = decode(z), z ~ N(0, I)      | `params`         | -             | `gmzoo.samplers.vae`          | Kingma & Welling 2014           |
| `sample_hierarchical_vae` | x, z_L ~ N(0, I) then ancestral | `params`         | -             | `gmzoo.samplers.vae`          | Markovian HVAE (Luo 2022)       |
| `ula`                     | exp(-E)                         | `energy_fn(x)`   | -             | `gmzoo.samplers.langevin`     | Roberts & Tweedie 1996, eq. (1) |
| `tempered_langevin`       | exp(-E / T), T = s^2 / (2 a)    | `energy_fn(x)`   | -             | `gmzoo.samplers.langevin`     | Du & Mordatch 2019, eq. (2)     |
| `gibbs_sample`            | p(v) of a binary RBM            | `params`         | -             | `gmzoo.families.rbm.rbm`      | Hinton 2002 (block Gibbs)       |

Their settings (keyword-only): ``ddpm_ancestral`` clip, variance; ``ddim`` num_steps, eta, clip;
``pc_sampler`` predictor, corrector_steps, snr; ``ode_sample`` method (euler, heun, rk4); the
VAEs apply_fn, latent_dim, likelihood, num_levels, mean (and num_layers); ``ula`` step_size,
num_steps, grad_clip, bounds (``tempered_langevin`` also noise_scale); ``gibbs_sample``
num_steps. The diffusion samplers also take ``return_trajectory``. Equation numbers in the last
column are the paper's, except "eq. (1)" / "eq. (2)", which are the module docstring's.

The library samplers are re-exported here (``from gmzoo.samplers import ddim``). The last row
is the RBM's own and stays with its family: import it from the module named in the table (this
package is a library and imports no family).
"""

from gmzoo.diffusion.samplers import ddim, ddpm_ancestral
from gmzoo.diffusion.solvers import (euler_maruyama, ode_sample, pc_sampler, reverse_diffusion,
                                     time_grid)
from gmzoo.samplers.langevin import tempered_langevin, ula
from gmzoo.samplers.vae import sample_hierarchical_vae, sample_vae

__all__ = [
    "ddpm_ancestral",
    "ddim",
    "euler_maruyama",
    "reverse_diffusion",
    "pc_sampler",
    "ode_sample",
    "time_grid",
    "sample_vae",
    "sample_hierarchical_vae",
    "ula",
    "tempered_langevin",
]
