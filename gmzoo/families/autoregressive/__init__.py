"""Autoregressive models: p(x) = prod_d p(x_{o(d)} | x_{o(<d)}), exact likelihood by teacher
forcing, sampling one dimension at a time in one ``lax.scan``.

The contract every network of the family keeps (so one likelihood, one naive sampler and one
evaluator serve all of them):

- A network is a Linen module ``net(x, label=None) -> raw``: ``x [B, *event]`` float32 values
  as the data gives them (binary 0/1, or integer levels 0..L-1 stored as float; the network
  rescales its own input), ``label [B]`` int32 class or None; ``raw [B, *event, P]``, the
  likelihood's P parameters for every dimension (:mod:`gmzoo.families.autoregressive.outputs`).
  ``event`` is ``(H, W, C)`` for images and ``(T, 1)`` for 1-D signals.
- Dimension d is flat index d of ``x.reshape(B, -1)`` (raster order: rows, then columns, then
  channels, so R, then G given R, then B given R and G at each pixel). ``raw`` for dimension d
  depends only on the dimensions before it in the network's ordering (raster unless the network
  says otherwise, e.g. MADE's orderings), and on ``label``.
- Samplers (:mod:`gmzoo.families.autoregressive.sampling`): the naive sampler re-runs the whole
  network for every dimension; a cached sampler carries what the network needs from one
  dimension to the next (NADE's pre-activation, a key-value cache, activation queues). Both
  split the key the same way (``jax.random.split(key, D)``; step d draws dimension o(d) with
  ``keys[d]``), so under the same key they give the same samples to float tolerance.
"""
