"""Conditional image diffusion on the fashion shop's products (survey Section 4.4), built with diffusers.

The pieces, in the order lesson 17 uses them:

* :class:`ConditionalUNet`: diffusers' ``UNet2DModel`` plus two embedding tables,
  one for the product category and one for the tone, each with an extra row
  that means "no condition". Their sum enters the UNet next to the time step
  (``class_embed_type="identity"``), so either condition can be dropped alone.
* :func:`train_diffusion`: the DDPM denoising loss, with ``DDPMScheduler`` adding
  the noise, and each condition replaced by "none" with probability ``p_uncond``
  (what classifier-free guidance needs). The network predicts the *velocity*
  v = √ᾱ ε − √(1−ᾱ) x_0 (:func:`diffusion_target`, Salimans & Ho 2022) rather than
  the noise ε: on this shop, with a few hundred CPU training steps and 10–20 DDIM
  steps, it was the single largest gain in how often the judge recognised the
  requested category (lesson 17's exercise 8 measures it).
* :func:`guided_noise`: classifier-free guidance, ε_uncond + w (ε_cond − ε_uncond).
* :func:`generate`: deterministic DDIM sampling (``DDIMScheduler``, η = 0), with
  optional RePaint-style inpainting: after every step the known region is
  replaced by the original image noised to the same level.
* :class:`ProductClassifier`: a small CNN trained on real product images; it
  judges generated images, and its penultimate layer is the feature space of
  :func:`frechet_distance`.
* :func:`shop_features`: the shop's own category/tone/pattern features of any
  28 x 28 image, so that the ground-truth user model can score generated products.

Images live in two spaces: the shop's ``uint8`` pixels (N, 28, 28), background 0,
and the model's float tensors (N, 1, S, S) in [-1, 1] at ``S = image_size``.
"""
from __future__ import annotations

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from scipy import linalg
from torch import nn

from course_utils.data.fashion_mnist import CLASS_NAMES
from course_utils.data.fashion_shop import TONES, _make_items

N_CATEGORIES, N_TONES = len(CLASS_NAMES), len(TONES)
NONE = -1  # the label meaning "no condition" (dropped for classifier-free guidance)
SHOP_SIZE = 28
# Generated backgrounds are near 0 but not exactly 0; the shop's measures treat every
# non-zero pixel as garment, so faint pixels are cleared before measuring tone and pattern.
BACKGROUND_LEVEL = 12


# ---------------------------------------------------------------- images
def _check_size(image_size: int) -> int:
    if not isinstance(image_size, (int, np.integer)) or not 8 <= image_size <= SHOP_SIZE or image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 between 8 and {SHOP_SIZE} (two halvings), "
                         f"got {image_size!r}")
    return int(image_size)


def to_model_space(images, image_size: int = SHOP_SIZE) -> torch.Tensor:
    """Shop pixels (N, 28, 28) uint8 -> model tensors (N, 1, S, S) in [-1, 1] (area-resized when S < 28)."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (SHOP_SIZE, SHOP_SIZE) or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 of shape (N, {SHOP_SIZE}, {SHOP_SIZE}), got {images.dtype} {images.shape}")
    x = torch.as_tensor(images, dtype=torch.float32)[:, None] / 127.5 - 1.0
    size = _check_size(image_size)
    return x if size == SHOP_SIZE else F.interpolate(x, size=(size, size), mode="area")


def to_pixels(x: torch.Tensor) -> np.ndarray:
    """Model tensors (N, 1, S, S) in [-1, 1] -> shop pixels (N, 28, 28) uint8 (bilinear when S < 28)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"expected a tensor of shape (N, 1, S, S), got {getattr(x, 'shape', type(x).__name__)}")
    x = x.detach().float().cpu()
    if x.shape[-1] != SHOP_SIZE:
        x = F.interpolate(x, size=(SHOP_SIZE, SHOP_SIZE), mode="bilinear", align_corners=False)
    return ((x[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


# ---------------------------------------------------------------- the model
class ConditionalUNet(nn.Module):
    """ε_θ(x_t, t, category, tone): a diffusers ``UNet2DModel`` with category and tone embeddings.

    ``category`` and ``tone`` are LongTensors (N,) with ``NONE`` (-1) for "no condition".
    """

    def __init__(self, image_size: int = 16, channels: tuple[int, ...] = (16, 32), layers_per_block: int = 1,
                 attention: bool = True):
        super().__init__()
        self.image_size = _check_size(image_size)
        if len(channels) < 2 or any(c % 8 for c in channels):
            raise ValueError(f"channels needs at least two levels, each a multiple of 8, got {channels!r}")
        n = len(channels)
        self.unet = UNet2DModel(sample_size=self.image_size, in_channels=1, out_channels=1,
                                block_out_channels=tuple(channels), layers_per_block=layers_per_block,
                                down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
                                norm_num_groups=8, class_embed_type="identity",
                                add_attention=attention)  # self-attention only in the middle block, at the lowest resolution
        dim = channels[0] * 4  # UNet2DModel's time-embedding width
        self.category_embedding = nn.Embedding(N_CATEGORIES + 1, dim)  # last row: no category
        self.tone_embedding = nn.Embedding(N_TONES + 1, dim)  # last row: no tone

    def condition(self, category: torch.Tensor, tone: torch.Tensor) -> torch.Tensor:
        category, tone = _check_labels(category, N_CATEGORIES, "category"), _check_labels(tone, N_TONES, "tone")
        return (self.category_embedding(torch.where(category == NONE, N_CATEGORIES, category))
                + self.tone_embedding(torch.where(tone == NONE, N_TONES, tone)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, category: torch.Tensor, tone: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (1, self.image_size, self.image_size):
            raise ValueError(f"expected images of shape (N, 1, {self.image_size}, {self.image_size}), got {tuple(x.shape)}")
        return self.unet(x, t, class_labels=self.condition(category, tone)).sample


def _check_labels(labels, n: int, name: str) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.dtype not in (torch.int32, torch.int64) or \
            (labels.numel() and (labels.min() < NONE or labels.max() >= n)):
        raise ValueError(f"{name} must be a 1-D integer tensor with values in {NONE}..{n - 1} ({NONE} = none)")
    return labels.long()


PREDICTION_TYPES = ("v_prediction", "epsilon")


def make_scheduler(n_train_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                   prediction_type: str = "v_prediction") -> DDPMScheduler:
    """The DDPM training schedule: β rises linearly from ``beta_start`` to ``beta_end`` over T steps.

    ``prediction_type`` says what the network outputs, ``"v_prediction"`` (v = √ᾱ ε − √(1−ᾱ) x_0)
    or ``"epsilon"`` (the noise); the DDIM sampler built from this schedule reads it too.
    """
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    return DDPMScheduler(num_train_timesteps=n_train_steps, beta_start=beta_start, beta_end=beta_end,
                         beta_schedule="linear", prediction_type=prediction_type)


def diffusion_target(scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the network should output at (x_t, t): the noise ε, or the velocity √ᾱ_t ε − √(1−ᾱ_t) x_0."""
    if scheduler.config.prediction_type == "epsilon":
        return noise
    return scheduler.get_velocity(x0, noise, t)


def linear_alphas_cumprod(n_train_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """ᾱ_t = ∏_{s ≤ t} (1 − β_s) for the linear schedule, in closed form (NumPy, float64)."""
    return np.cumprod(1.0 - np.linspace(beta_start, beta_end, n_train_steps))


def drop_conditions(labels: torch.Tensor, p_uncond: float, generator: torch.Generator) -> torch.Tensor:
    """``labels`` with each entry replaced by ``NONE`` with probability ``p_uncond``."""
    if not 0 <= p_uncond < 1:
        raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond!r}")
    drop = torch.rand(labels.shape, generator=generator) < p_uncond
    return torch.where(drop, torch.full_like(labels, NONE), labels)


def train_diffusion(model: ConditionalUNet, images: torch.Tensor, category, tone, n_steps: int = 300,
                    batch_size: int = 64, lr: float = 2e-3, p_uncond: float = 0.15, seed: int = 0,
                    scheduler: DDPMScheduler | None = None) -> dict:
    """Train with the DDPM loss ||target − f_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t, c)||²; returns losses and seconds.

    The target is the scheduler's: v (default) or ε (:func:`diffusion_target`).

    images: (N, 1, S, S) in [-1, 1]; category, tone: (N,) labels. Each condition is
    dropped independently with probability ``p_uncond``.
    """
    if images.ndim != 4 or images.shape[1:] != (1, model.image_size, model.image_size):
        raise ValueError(f"images must have shape (N, 1, {model.image_size}, {model.image_size}), got {tuple(images.shape)}")
    category, tone = _check_labels(category, N_CATEGORIES, "category"), _check_labels(tone, N_TONES, "tone")
    if not len(images) == len(category) == len(tone):
        raise ValueError(f"images, category and tone differ in length: {len(images)}, {len(category)}, {len(tone)}")
    scheduler = scheduler or make_scheduler()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=n_steps, pct_start=0.1)
    model.train()
    losses, start = [], time.perf_counter()
    for _ in range(n_steps):
        idx = torch.randint(len(images), (batch_size,), generator=generator)
        noise = torch.randn((batch_size, *images.shape[1:]), generator=generator)
        t = torch.randint(scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        x_t = scheduler.add_noise(images[idx], noise, t)
        loss = F.mse_loss(model(x_t, t, drop_conditions(category[idx], p_uncond, generator),
                                drop_conditions(tone[idx], p_uncond, generator)),
                          diffusion_target(scheduler, images[idx], noise, t))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        losses.append(loss.item())
    model.eval()
    return {"losses": losses, "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------- sampling
def guided_noise(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance: ε_uncond + w (ε_cond − ε_uncond); w = 0 unconditional, w = 1 conditional."""
    _check_guidance(guidance)
    if eps_uncond.shape != eps_cond.shape:
        raise ValueError(f"the two noise predictions differ in shape: {tuple(eps_uncond.shape)} vs {tuple(eps_cond.shape)}")
    return eps_uncond + guidance * (eps_cond - eps_uncond)


def _check_guidance(guidance) -> float:
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float, np.integer, np.floating)) \
            or not np.isfinite(guidance) or guidance < 0:
        raise ValueError(f"the guidance scale must be a finite number >= 0 (0: unconditional, 1: conditional, "
                         f"> 1: guided), got {guidance!r}")
    return float(guidance)


@torch.no_grad()
def generate(model: ConditionalUNet, category, tone=None, guidance: float = 2.0, n_steps: int = 20, seed: int = 0,
             known: torch.Tensor | None = None, keep: torch.Tensor | None = None, batch_size: int = 500,
             scheduler: DDPMScheduler | None = None) -> torch.Tensor:
    """DDIM samples (N, 1, S, S) in [-1, 1] for the given conditions (``tone=None``: no tone condition).

    Inpainting: pass ``known`` (N, 1, S, S) and ``keep`` (a 0/1 mask broadcastable to it,
    1 = keep the known pixel). After every step the kept region is replaced by
    ``known`` noised to the new step's level (RePaint, without its resampling jumps),
    and the final image carries the known pixels exactly.
    """
    _check_guidance(guidance)
    category = _check_labels(category, N_CATEGORIES, "category")
    tone = torch.full_like(category, NONE) if tone is None else _check_labels(tone, N_TONES, "tone")
    if len(tone) != len(category):
        raise ValueError(f"category and tone differ in length: {len(category)} and {len(tone)}")
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    size = (len(category), 1, model.image_size, model.image_size)
    if (known is None) != (keep is None):
        raise ValueError("inpainting needs both known (the original images) and keep (the mask of pixels to keep)")
    if known is not None:
        if tuple(known.shape) != size:
            raise ValueError(f"known must have shape {size}, got {tuple(known.shape)}")
        keep = torch.broadcast_to(torch.as_tensor(keep, dtype=known.dtype), size)
    ddim = DDIMScheduler.from_config((scheduler or make_scheduler()).config, timestep_spacing="trailing")
    ddim.set_timesteps(n_steps)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, generator=generator)
    model.eval()
    for i, t in enumerate(ddim.timesteps):
        eps = torch.cat([_guided_eps(model, x[s:s + batch_size], t, category[s:s + batch_size],
                                     tone[s:s + batch_size], guidance) for s in range(0, len(x), batch_size)])
        x = ddim.step(eps, t, x, eta=0.0).prev_sample
        if known is not None:
            last = i == len(ddim.timesteps) - 1
            noised = known if last else ddim.add_noise(known, torch.randn(size, generator=generator),
                                                       ddim.timesteps[i + 1:i + 2])
            x = keep * noised + (1 - keep) * x
    return x


def _guided_eps(model, x, t, category, tone, guidance: float) -> torch.Tensor:
    steps = torch.full((len(x),), int(t))
    none = torch.full_like(category, NONE)
    if guidance == 0:
        return model(x, steps, none, none)
    if guidance == 1:
        return model(x, steps, category, tone)
    both = model(torch.cat([x, x]), torch.cat([steps, steps]), torch.cat([none, category]), torch.cat([none, tone]))
    eps_uncond, eps_cond = both.chunk(2)
    return guided_noise(eps_uncond, eps_cond, guidance)


# ---------------------------------------------------------------- judging the images
class ProductClassifier(nn.Module):
    """A small CNN: (N, 1, S, S) in [-1, 1] -> 10 category logits; ``features`` is its 64-d penultimate layer."""

    def __init__(self, image_size: int = 16, width: int = 16):
        super().__init__()
        self.image_size = _check_size(image_size)
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(2 * width * (self.image_size // 4) ** 2, 64), nn.ReLU())
        self.head = nn.Linear(64, N_CATEGORIES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1:] != (1, self.image_size, self.image_size):
            raise ValueError(f"expected images of shape (N, 1, {self.image_size}, {self.image_size}), got {tuple(x.shape)}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(model: ProductClassifier, images: torch.Tensor, labels, n_epochs: int = 8,
                     batch_size: int = 64, lr: float = 2e-3, seed: int = 0) -> dict:
    """Cross-entropy training on real images (N, 1, S, S) with labels (N,); returns losses and seconds."""
    labels = _check_labels(labels, N_CATEGORIES, "labels")
    if (labels == NONE).any() or len(labels) != len(images):
        raise ValueError("every training image needs a category label")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses, start = [], time.perf_counter()
    for _ in range(n_epochs):
        for idx in torch.randperm(len(images), generator=generator).split(batch_size):
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    model.eval()
    return {"losses": losses, "seconds": time.perf_counter() - start}


@torch.no_grad()
def classify(model: ProductClassifier, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Predicted categories (N,) and penultimate features (N, 64) of images (N, 1, S, S)."""
    model.eval()
    features = model.features(x)
    return model.head(features).argmax(1).numpy(), features.numpy()


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """||μ_a − μ_b||² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½) between two sets of feature rows (the FID formula)."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two (n, d) feature arrays with the same d and n >= 2, got {a.shape} and {b.shape}")
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # dead ReLU units make a covariance singular; its square root is still fine
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root  # tiny imaginary parts are numerical noise
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def shop_features(pixels: np.ndarray, categories) -> np.ndarray:
    """The shop's category, tone and pattern one-hots (N, 15) for images (N, 28, 28) uint8.

    Computed by the shop's own item builder, so a generated product is measured
    exactly as the catalogue was. Price and popularity are not visible in an image
    and are left out, i.e. set to the catalogue average (0 after standardising).
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[1:] != (SHOP_SIZE, SHOP_SIZE) or pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8 of shape (N, {SHOP_SIZE}, {SHOP_SIZE}), got {pixels.dtype} {pixels.shape}")
    categories = np.asarray(categories)
    if categories.shape != (len(pixels),) or categories.min(initial=0) < 0 or categories.max(initial=0) >= N_CATEGORIES:
        raise ValueError(f"categories must be {len(pixels)} labels in 0..{N_CATEGORIES - 1}")
    _, features, _ = _make_items(pixels, categories.astype(np.int64), np.random.default_rng(0))
    return features[:, :N_CATEGORIES + N_TONES + 2]


def clear_background(pixels: np.ndarray, level: int = BACKGROUND_LEVEL) -> np.ndarray:
    """Pixels fainter than ``level`` set to 0, the background value of the real photos."""
    return np.where(np.asarray(pixels) < level, 0, pixels).astype(np.uint8)


def nearest_distance(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each row of ``features`` (n, d), the Euclidean distance to its nearest row of ``reference`` (m, d)."""
    return torch.cdist(torch.as_tensor(features, dtype=torch.float32),
                       torch.as_tensor(reference, dtype=torch.float32)).min(1).values.numpy()


def within_group_spread(features: np.ndarray, groups) -> float:
    """Diversity: the mean pairwise distance between rows of ``features`` in the same group, averaged over groups."""
    features, groups = torch.as_tensor(features, dtype=torch.float32), np.asarray(groups)
    spreads = [torch.pdist(features[torch.as_tensor(groups == g)]).mean().item()
               for g in np.unique(groups) if (groups == g).sum() >= 2]
    if not spreads:
        raise ValueError("within_group_spread needs at least one group with two or more rows")
    return float(np.mean(spreads))


# ---------------------------------------------------------------- personalisation
def preferred_conditions(item_scores: np.ndarray, categories, tones) -> tuple[np.ndarray, np.ndarray]:
    """Each user's favourite (category, tone) cell: the cell whose catalogue items score highest on average.

    item_scores: (n_users, n_items), e.g. a recommender's scores; categories, tones: (n_items,) labels.
    Returns two (n_users,) label arrays.
    """
    scores = np.asarray(item_scores, dtype=np.float64)
    cell = np.asarray(categories) * N_TONES + np.asarray(tones)
    if scores.ndim != 2 or cell.shape != (scores.shape[1],):
        raise ValueError(f"item_scores must be (n_users, n_items) with n_items = {len(cell)}, got {scores.shape}")
    one_hot = np.eye(N_CATEGORIES * N_TONES)[cell]  # (n_items, 30)
    counts = one_hot.sum(0)
    means = np.where(counts > 0, scores @ one_hot / np.maximum(counts, 1), -np.inf)
    best = means.argmax(1)
    return best // N_TONES, best % N_TONES


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A random permutation with no fixed point: ``other[u]`` is another user than ``u`` (n >= 2)."""
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"a derangement needs at least 2 users, got {n!r}")
    order = np.random.default_rng(seed).permutation(n)
    other = np.empty(n, dtype=np.int64)
    other[order] = np.roll(order, 1)  # each user in the shuffled cycle takes the next one's place
    return other


# ---------------------------------------------------------------- plotting
def show_image_grid(images: np.ndarray, titles=None, n_cols: int = 10, row_labels=None, size: float = 1.1):
    """Grey-scale images (N, H, W) tiled into one picture, with a small title over each tile.

    The same grid as ``course_utils.plotting.show_images``, drawn as a single ``imshow``:
    one axes instead of N keeps a 40-image figure at a fraction of a CPU-second.
    """
    images = np.asarray(images)
    if images.ndim != 3 or not len(images):
        raise ValueError(f"images must be a non-empty N × H × W array, got shape {images.shape}")
    n_rows, (h, w), gap = -(-len(images) // n_cols), images.shape[1:], 2
    row_gap = gap if titles is None else h // 3  # room for the titles
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    if row_labels is not None and len(row_labels) != n_rows:
        raise ValueError(f"{len(row_labels)} row labels for {n_rows} rows")
    canvas = np.full((n_rows * (h + row_gap) - row_gap, n_cols * (w + gap) - gap), np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, n_cols)
        canvas[r * (h + row_gap):r * (h + row_gap) + h, c * (w + gap):c * (w + gap) + w] = image
    fig, ax = plt.subplots(figsize=(size * n_cols, size * n_rows * 1.15))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([] if row_labels is None else np.arange(n_rows) * (h + row_gap) + h / 2, [] if row_labels is None
                  else row_labels, fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    for i, title in enumerate(titles if titles is not None else []):
        r, c = divmod(i, n_cols)
        ax.text(c * (w + gap) + w / 2, r * (h + row_gap) - 0.5, str(title), ha="center", va="bottom", fontsize=6.5)
    return fig


# ---------------------------------------------------------------- online upgrade
def stable_diffusion_images(model_id: str, prompts: list[str], guidance: float = 7.5, n_steps: int = 25,
                            seed: int = 0):
    """Images from a pretrained Stable Diffusion pipeline (needs the hub, and a GPU to be quick).

    The same guidance scale as the offline model: diffusers' pipeline applies the
    same classifier-free mixing (:func:`guided_noise`) to a text condition.
    """
    _check_guidance(guidance)
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty strings")
    from diffusers import StableDiffusionPipeline

    from course_utils.config import get_device

    device = get_device()
    pipe = StableDiffusionPipeline.from_pretrained(model_id).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    return pipe(prompts, guidance_scale=guidance, num_inference_steps=n_steps, generator=generator).images
