"""Energy-based models p(x) ~ exp(-E(x)): the Langevin samplers (``langevin``). The replay
buffer, energy networks, contrastive-divergence objective and the recipes are still to come."""
