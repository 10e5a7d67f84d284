"""Image-to-image tasks built from any image batch: pix2pix pairs, SRGAN scales, CycleGAN domains.

All functions are pure jax.numpy (usable inside a compiled train step) and take float images
`[B, H, W, C]` in [-1, 1] (see `transforms.to_symmetric`); the task name, the factor and the
config are static Python values.

Paired tasks, `make_pair(task, images, key) -> (source, target)`, target = the images:
- "inpaint": one random `s x s` square hole per image, s = max(1, round(mask_fraction * min(H, W))),
    its top-left corner uniform over all (H - s + 1)(W - s + 1) positions. Source
    `[B, H, W, C + 1]`: the image with hole pixels set to -1, then the mask as the LAST channel
    (1.0 inside the hole, 0.0 elsewhere). `square_mask` gives the mask alone.
- "invert": source = -images (a deterministic toy; an involution). `[B, H, W, C]`.
- "edges": source `[B, H, W, 1]` = +1 where the Sobel gradient magnitude of the channel mean
    exceeds `edge_threshold`, else -1 (pix2pix's edges -> photo in miniature). Sobel kernels are
    divided by 8 and the image is edge-replicated, so a constant image has no edges (borders
    included) and a full -1 -> +1 step has magnitude 1 on the two pixel columns either side of it.
- "denoise": source = clip(images + noise_std * N(0, I), -1, 1). `[B, H, W, C]`.
`source_channels(task, C)` gives the source channel count for a generator's input layer.

Super-resolution (SRGAN): `downsample` is the exact box filter (the mean of each f x f block;
f must divide H and W), so low-res pixel i covers high-res pixels [i f, (i + 1) f) and its centre
sits at high-res coordinate (i + 1/2) f - 1/2: the half-pixel-centre convention that
`jax.image.resize` also uses. `bicubic_upsample` is `jax.image.resize(method="bicubic")`: Keys'
cubic convolution with a = -0.5 (as TF / PIL; PyTorch uses a = -0.75), half-pixel centres, and at
the border the taps falling outside the image are dropped and the remaining weights renormalised
(no edge replication). Antialiasing only affects downscaling, so it is a no-op here. The output is
NOT clipped: it overshoots [-1, 1] near sharp strokes (to about -1.16 / 1.15 on a digit); clip
before computing PSNR / SSIM if the reference does. It is the baseline an SR model must beat.

Unpaired domains (CycleGAN): `unpaired_domains(name, images, labels)` splits the images by index
parity: domain A = rows 0, 2, 4, ... unchanged, domain B = rows 1, 3, 5, ... transformed. The halves
are disjoint, so no image (nor its transformed twin) is in both domains and no pairs exist.
"digits_vs_inverted": B = -x. "thin_vs_thick": B = `dilate(x)`, a 3 x 3 max-pool (stride 1, same
size): grey-scale morphological dilation of the strokes (bright on dark); max commutes with the
increasing map [0, 1] -> [-1, 1], so dilating in [-1, 1] equals dilating in [0, 1].
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = [
    "DOMAINS",
    "TASKS",
    "PairConfig",
    "bicubic_upsample",
    "dilate",
    "domain_map",
    "downsample",
    "make_pair",
    "mask_side",
    "sobel_magnitude",
    "source_channels",
    "square_mask",
    "unpaired_domains",
]

TASKS: tuple[str, ...] = ("inpaint", "invert", "edges", "denoise")
DOMAINS: tuple[str, ...] = ("digits_vs_inverted", "thin_vs_thick")


@dataclasses.dataclass(frozen=True)
class PairConfig:
    """Knobs of the paired tasks (hashable, so it can be a static jit argument)."""

    mask_fraction: float = 0.5  # inpaint: hole side / min(H, W)
    edge_threshold: float = 0.25  # edges: Sobel magnitude (per unit of [-1, 1]) counted as edge
    noise_std: float = 0.2  # denoise: Gaussian noise std in [-1, 1] units

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_fraction <= 1.0:
            raise ValueError(f"mask_fraction must be in (0, 1], got {self.mask_fraction}")
        if not self.edge_threshold >= 0.0:
            raise ValueError(f"edge_threshold must be >= 0, got {self.edge_threshold}")
        if not self.noise_std >= 0.0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")


def _check_images(images: ArrayLike, where: str) -> jax.Array:
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"{where}: images must be [B, H, W, C], got shape {images.shape}")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"{where}: images must be float in [-1, 1] (see transforms.to_symmetric), got"
            f" {images.dtype}"
        )
    return images


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown paired task {task!r}; allowed: {', '.join(TASKS)}")


def source_channels(task: str, channels: int) -> int:
    """Channels of `make_pair(task, ...)`'s source for images with `channels` channels."""
    _check_task(task)
    return {"inpaint": channels + 1, "edges": 1}.get(task, channels)


def mask_side(height: int, width: int, mask_fraction: float) -> int:
    """Side s = max(1, round(mask_fraction * min(H, W))) of the inpainting hole."""
    return max(1, min(round(mask_fraction * min(height, width)), min(height, width)))


def square_mask(key: jax.Array, batch: int, height: int, width: int, side: int) -> jax.Array:
    """float32 [B, H, W, 1]: 1.0 on one `side x side` square per image, top-left corner uniform."""
    if not 1 <= side <= min(height, width):
        raise ValueError(f"mask side must be in [1, {min(height, width)}], got {side}")
    key_y, key_x = jax.random.split(key)
    y0 = jax.random.randint(key_y, (batch, 1), 0, height - side + 1)  # [B, 1]
    x0 = jax.random.randint(key_x, (batch, 1), 0, width - side + 1)  # [B, 1]
    rows, cols = jnp.arange(height)[None], jnp.arange(width)[None]  # [1, H], [1, W]
    in_rows = (rows >= y0) & (rows < y0 + side)  # [B, H]
    in_cols = (cols >= x0) & (cols < x0 + side)  # [B, W]
    return (in_rows[:, :, None] & in_cols[:, None, :])[..., None].astype(jnp.float32)


def sobel_magnitude(images: ArrayLike) -> jax.Array:
    """[B, H, W, C] -> [B, H, W, C]: sqrt(Gx^2 + Gy^2), Sobel kernels / 8, edge-replicated border.

    Gx = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]] / 8 (Gy its transpose), so a linear ramp of slope g
    per pixel has magnitude |g|, and a jump of height h gives h / 2 on each of the two pixels
    beside it (0 elsewhere).
    """
    x = jnp.pad(jnp.asarray(images), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    smooth_rows = x[:, :-2] + 2.0 * x[:, 1:-1] + x[:, 2:]  # [B, H, W + 2, C]: vertical [1, 2, 1]
    smooth_cols = x[:, :, :-2] + 2.0 * x[:, :, 1:-1] + x[:, :, 2:]  # [B, H + 2, W, C]
    gx = (smooth_rows[:, :, 2:] - smooth_rows[:, :, :-2]) / 8.0  # [B, H, W, C]
    gy = (smooth_cols[:, 2:] - smooth_cols[:, :-2]) / 8.0  # [B, H, W, C]
    return jnp.sqrt(gx**2 + gy**2)


def make_pair(
    task: str, images: ArrayLike, key: jax.Array, config: PairConfig = PairConfig()
) -> tuple[jax.Array, jax.Array]:
    """(source, target) for paired translation (pix2pix, Isola et al. 2017); target = images.

    See the module docstring for each task's source. Deterministic given `key` (ignored by
    "invert" and "edges"); `task` and `config` are static.
    """
    _check_task(task)
    images = _check_images(images, f"make_pair({task!r})")  # [B, H, W, C]
    b, h, w, _ = images.shape
    if task == "inpaint":
        mask = square_mask(key, b, h, w, mask_side(h, w, config.mask_fraction))  # [B, H, W, 1]
        holed = jnp.where(mask > 0, -1.0, images).astype(images.dtype)
        source = jnp.concatenate([holed, mask.astype(images.dtype)], axis=-1)  # [B, H, W, C+1]
    elif task == "invert":
        source = -images
    elif task == "edges":
        magnitude = sobel_magnitude(images.mean(axis=-1, keepdims=True))  # [B, H, W, 1]
        source = jnp.where(magnitude > config.edge_threshold, 1.0, -1.0).astype(images.dtype)
    else:  # denoise
        noise = jax.random.normal(key, images.shape, images.dtype)
        source = jnp.clip(images + config.noise_std * noise, -1.0, 1.0)
    return source, images


def _check_factor(factor: int, where: str) -> None:
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise ValueError(f"{where}: factor must be an int >= 1, got {factor!r}")


def downsample(images: ArrayLike, factor: int) -> jax.Array:
    """[B, H, W, C] -> [B, H/f, W/f, C]: area averaging, the mean of each f x f block (exact box).

    `factor` must divide H and W (no partial blocks).
    """
    _check_factor(factor, "downsample")
    images = _check_images(images, "downsample")
    b, h, w, c = images.shape
    if h % factor or w % factor:
        divisors = [d for d in range(1, min(h, w) + 1) if h % d == 0 and w % d == 0]
        raise ValueError(
            f"downsample: factor {factor} must divide the image size {h}x{w}; allowed factors:"
            f" {', '.join(map(str, divisors))}"
        )
    blocks = images.reshape(b, h // factor, factor, w // factor, factor, c)
    return blocks.mean(axis=(2, 4))


def bicubic_upsample(images: ArrayLike, factor: int) -> jax.Array:
    """[B, h, w, C] -> [B, f h, f w, C]: Keys bicubic (a = -0.5), half-pixel centres, unclipped."""
    _check_factor(factor, "bicubic_upsample")
    images = _check_images(images, "bicubic_upsample")
    b, h, w, c = images.shape
    return jax.image.resize(images, (b, h * factor, w * factor, c), method="bicubic")


def dilate(images: ArrayLike) -> jax.Array:
    """[B, H, W, C] -> same: 3 x 3 max-pool, stride 1, 'SAME' (grey-scale dilation of strokes)."""
    images = _check_images(images, "dilate")
    return jax.lax.reduce_window(
        images, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 1, 1, 1), "SAME"
    ).astype(images.dtype)


def domain_map(name: str):
    """The map T of domain A into domain B of the unpaired domains `name`: -x for
    "digits_vs_inverted", `dilate` for "thin_vs_thick" (the ground truth a CycleGAN's A -> B
    generator should find, never shown to it paired)."""
    if name not in DOMAINS:
        raise ValueError(f"unknown unpaired domains {name!r}; allowed: {', '.join(DOMAINS)}")
    return jnp.negative if name == "digits_vs_inverted" else dilate


def unpaired_domains(
    name: str, images: ArrayLike, labels: ArrayLike
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Two unpaired domains `({"image", "label"}, {"image", "label"})` for CycleGAN (Zhu 2017).

    A = even rows unchanged ([ceil(N/2), H, W, C]); B = odd rows transformed ([floor(N/2), ...]):
    "digits_vs_inverted" -> -x, "thin_vs_thick" -> `dilate(x)`. Labels follow their rows.
    """
    if name not in DOMAINS:
        raise ValueError(f"unknown unpaired domains {name!r}; allowed: {', '.join(DOMAINS)}")
    images = _check_images(images, f"unpaired_domains({name!r})")  # [N, H, W, C]
    labels = jnp.asarray(labels)
    if labels.shape != images.shape[:1]:
        raise ValueError(
            f"unpaired_domains: labels must be [{images.shape[0]}], got shape {labels.shape}"
        )
    b_images = domain_map(name)(images[1::2])
    return (
        {"image": images[0::2], "label": labels[0::2]},
        {"image": b_images, "label": labels[1::2]},
    )
