"""A simulated fashion shop: real Fashion-MNIST items, simulated users with a known ground truth.

Real logs never tell us what a user *would* have liked, so the multimodal,
simulation and A/B-testing lessons use this shop instead: every user's
utility for every item is known exactly (``true_utility``), interactions are
sampled from it, and new slates can be shown to the same users (``respond``).

The ground truth is deliberately simple: utility is linear in item features,

    utility(u, i) = user_weights[u] @ item_features[i]

with one-hot category, tone and pattern, the standardised log price and a
latent item popularity. Everything is deterministic given ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from course_utils.data.fashion_mnist import CLASS_NAMES, FashionMNIST, load_fashion_mnist

TONES = ("light", "mid-tone", "dark")
PATTERNS = ("plain", "textured")
# Fictional brands and their price level relative to the category's typical price.
BRANDS = {"Northwind": 1.0, "Alder & Co": 1.3, "Kestrel": 0.9, "Miro": 1.15, "Saltmarsh": 0.8, "Umber": 1.05}
BASE_PRICE = dict(zip(CLASS_NAMES, (15, 40, 45, 55, 90, 35, 30, 65, 50, 80)))
NOUN = dict(zip(CLASS_NAMES, ("T-shirt", "trousers", "pullover", "dress", "coat",
                              "sandals", "shirt", "sneakers", "bag", "ankle boots")))
ARTICLE_NOUN = dict(zip(CLASS_NAMES, ("T-shirt", "pair of trousers", "pullover", "dress", "coat",
                                      "pair of sandals", "shirt", "pair of sneakers", "bag", "pair of ankle boots")))

# Fashion-MNIST pixels are negated photos: background 0, dark garments bright.
TONE_EDGES = (120.0, 165.0)  # mean garment intensity; about a third of the subset per tone
TEXTURE_EDGE = 30.0  # mean absolute intensity step inside the garment; above it looks textured

MIN_INTERACTIONS = 5  # every user gets at least this many, as in a 5-core dataset
ASPECTS = ("category", "tone", "pattern", "price", "popularity")
# First column of each aspect in item_features: one-hots, then log price and popularity.
ASPECT_STARTS = np.cumsum((0, len(CLASS_NAMES), len(TONES), len(PATTERNS), 1))
RATING_CDF = (0.06, 0.17, 0.44, 0.78)  # share of ratings <= 1, 2, 3, 4: roughly MovieLens
START_TIME = 1_704_067_200  # 2024-01-01 00:00 UTC, in Unix seconds like MovieLens
DAY = 86_400
PERIOD_DAYS = 180

DESCRIPTIONS = (
    "A {tone} {article_noun} from {brand} with a {pattern} finish and a {fit} cut.",
    "{brand} makes this {article_noun} in a {tone} shade. {Pattern} and {fit}, yours for ${price:.2f}.",
    "Our {fit} {article_noun} in {tone}, {pattern_phrase}. Designed by {brand}.",
)
PATTERN_PHRASE = {"plain": "clean and plain", "textured": "with a textured surface"}
REVIEWS = {
    ("positive", "category"): ("Great {noun}, just what I was after.",
                               "Exactly the kind of {noun} I was looking for."),
    ("positive", "tone"): ("Love the {tone} colour, fits well.", "The {tone} colour is perfect."),
    ("positive", "pattern"): ("Really like the {pattern} look.", "The {pattern} finish looks great in person."),
    ("positive", "price"): ("Great value at ${price:.0f}.", "Cheap and cheerful, very happy with it."),
    ("positive", "popularity"): ("Everyone has one and now I see why.", "Bought it because of the hype, no regrets."),
    ("neutral", None): ("It's fine. Nothing special.", "Does the job for ${price:.0f}.",
                        "OK {noun}, would not buy twice."),
    ("negative", "category"): ("Not really my style of {noun}.", "Turns out {noun} from {brand} aren't for me."),
    ("negative", "tone"): ("The {tone} colour did not work for me.", "Disappointed by the {tone} colour."),
    ("negative", "pattern"): ("The {pattern} finish looks cheap.", "Did not like the {pattern} look at all."),
    ("negative", "price"): ("Overpriced at ${price:.0f}.", "Not worth ${price:.0f}."),
    ("negative", "popularity"): ("Overhyped, everyone has one.", "Bought it because of the hype, regret it."),
}


@dataclass(eq=False)  # DataFrames do not compare with ==
class FashionShop:
    """Items, users and interactions of the simulated shop, plus its ground-truth preference model.

    ``items``, ``users`` and ``interactions`` use 0-based ``item``/``user`` ids;
    row ``i`` of ``images`` and ``item_features`` is item ``i``, row ``u`` of
    ``user_weights`` is user ``u``.
    """

    items: pd.DataFrame
    images: np.ndarray
    users: pd.DataFrame
    item_features: np.ndarray
    user_weights: np.ndarray
    feature_names: tuple[str, ...]
    temperature: float
    seed: int
    click_offset: float
    interactions: pd.DataFrame | None = None
    rating_thresholds: np.ndarray | None = None
    _rng: np.random.Generator = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.user_weights)

    @property
    def n_items(self) -> int:
        return len(self.item_features)

    def _ids(self, ids, n: int, name: str) -> np.ndarray:
        ids = np.arange(n) if ids is None else np.asarray(ids)
        if not np.issubdtype(ids.dtype, np.integer) or (ids.size and (ids.min() < 0 or ids.max() >= n)):
            raise ValueError(f"{name} ids must be integers in 0..{n - 1}")
        return ids

    def _generator(self, seed) -> np.random.Generator:
        # Without a seed the shop's own generator moves on, like real users: each call differs,
        # yet the whole sequence of calls is reproducible from the shop's seed.
        return self._rng if seed is None else np.random.default_rng(seed)

    def true_utility(self, users=None, items=None) -> np.ndarray:
        """Noise-free utility, shape (len(users), len(items)); all users or items when ``None``."""
        users = np.atleast_1d(self._ids(users, self.n_users, "user"))
        items = np.atleast_1d(self._ids(items, self.n_items, "item"))
        return self.user_weights[users] @ self.item_features[items].T

    def click_probability(self, users, slates) -> np.ndarray:
        """P(click) for items shown in ranked slates: examination by rank times attraction.

        ``slates`` is (k,) for one user or (len(users), k); the examination
        probability 1/log2(rank + 2) is the position bias that DCG assumes.
        """
        users = np.atleast_1d(self._ids(users, self.n_users, "user"))
        slates = np.asarray(slates)
        grid = np.atleast_2d(self._ids(slates, self.n_items, "item"))
        if grid.ndim != 2 or len(grid) != len(users):
            raise ValueError(f"slates must have shape (k,) for one user or ({len(users)}, k), got {slates.shape}")
        utility = np.einsum("uf,ukf->uk", self.user_weights[users], self.item_features[grid])
        attraction = 1.0 / (1.0 + np.exp(-(utility - self.click_offset)))
        examination = 1.0 / np.log2(np.arange(grid.shape[1]) + 2.0)
        return (attraction * examination).reshape(slates.shape)

    def respond(self, users, slates, seed=None) -> np.ndarray:
        """Simulated clicks (bool, shape of ``slates``) of ``users`` on the slates they were shown."""
        probability = self.click_probability(users, slates)
        return self._generator(seed).random(probability.shape) < probability

    def sample_interactions(self, mean_interactions: float = 20.0, temperature: float | None = None,
                            users=None, seed=None) -> pd.DataFrame:
        """Draw a new log: user, item, rating (1-5), timestamp (Unix s), review; sorted by user, time.

        Each user picks items without replacement with probability softmax(utility / temperature).
        """
        temperature = self.temperature if temperature is None else _check_positive(temperature, "temperature")
        if _check_positive(mean_interactions, "mean_interactions") < MIN_INTERACTIONS:
            raise ValueError(f"mean_interactions must be at least {MIN_INTERACTIONS}, got {mean_interactions!r}")
        users = np.atleast_1d(self._ids(users, self.n_users, "user"))
        rng = self._generator(seed)

        extra = self.users["activity"].to_numpy()[users] * (mean_interactions - MIN_INTERACTIONS)
        counts = np.minimum(MIN_INTERACTIONS + rng.poisson(extra), self.n_items)
        user, item = _sample_without_replacement(self, rng, users, counts, temperature)
        order = np.lexsort((rng.random(len(user)), user))  # a user's items come in random order in time
        user, item = user[order], item[order]

        # Each user starts within the first PERIOD_DAYS and visits at a steady (Poisson) rate.
        span = rng.uniform(14, 150, size=self.n_users) * DAY
        start = START_TIME + rng.uniform(0, PERIOD_DAYS * DAY - span)
        gaps = 60 + rng.exponential(span[user] / np.bincount(user, minlength=self.n_users)[user])
        timestamp = start[user] + pd.Series(gaps).groupby(user).cumsum().to_numpy()

        utility = np.einsum("nf,nf->n", self.user_weights[user], self.item_features[item])
        latent = utility + self.users["rating_bias"].to_numpy()[user] + rng.normal(0, 0.5, len(user))
        if self.rating_thresholds is None:
            # The first log fixes the rating scale, so later logs of the same users rate alike.
            self.rating_thresholds = np.quantile(latent, RATING_CDF)
        rating = 1 + np.searchsorted(self.rating_thresholds, latent)
        # Each aspect's contribution relative to an average item: what made this item better or worse.
        contribution = self.user_weights[user] * (self.item_features[item] - self.item_features.mean(0))
        aspects = np.add.reduceat(contribution, ASPECT_STARTS, axis=1)
        review = _reviews(self.items, item, rating, aspects, rng)
        return pd.DataFrame({"user": user, "item": item, "rating": rating.astype(np.int64),
                             "timestamp": timestamp.astype(np.int64), "review": review})


def make_fashion_shop(n_users: int = 500, seed: int = 0, images: np.ndarray | FashionMNIST | None = None,
                      labels: np.ndarray | None = None, mean_interactions: float = 20.0,
                      temperature: float = 1.0) -> FashionShop:
    """Build the shop: one item per image (default: the 3,000-image subset) and ``n_users`` users.

    ``images`` may be a ``FashionMNIST`` (labels included) or an (N, 28, 28)
    uint8 array with matching ``labels``. Items, users, the interaction log
    and clicks draw from separate random streams, so changing ``n_users``
    leaves the items unchanged.
    """
    if not isinstance(n_users, (int, np.integer)) or n_users <= 0:
        raise ValueError(f"n_users must be a positive integer, got {n_users!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _check_positive(temperature, "temperature")
    if _check_positive(mean_interactions, "mean_interactions") < MIN_INTERACTIONS:
        raise ValueError(f"mean_interactions must be at least {MIN_INTERACTIONS}, got {mean_interactions!r}")
    images, labels = _check_images(images, labels)
    item_rng, user_rng, log_rng, click_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))

    items, item_features, feature_names = _make_items(images, labels, item_rng)
    users, user_weights = _make_users(n_users, user_rng)
    shop = FashionShop(items=items, images=images, users=users, item_features=item_features,
                       user_weights=user_weights, feature_names=feature_names, temperature=float(temperature),
                       seed=int(seed), click_offset=0.0, _rng=click_rng)
    # Calibrate clicks so that only a user's top ~5% of items are more likely clicked than not.
    shop.click_offset = float(np.quantile(shop.true_utility(users=np.arange(min(n_users, 1000))), 0.95))
    shop.interactions = shop.sample_interactions(mean_interactions, seed=log_rng)
    return shop


# ---------------------------------------------------------------- items
def _make_items(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    pixels = images.astype(np.float32)
    garment = pixels > 0
    coverage = garment.mean(axis=(1, 2))
    intensity = pixels.sum(axis=(1, 2)) / np.maximum(garment.sum(axis=(1, 2)), 1)
    # Texture: intensity steps between neighbouring garment pixels, so the outline does not count.
    inside_x, inside_y = garment[:, :, 1:] & garment[:, :, :-1], garment[:, 1:] & garment[:, :-1]
    steps = ((np.abs(np.diff(pixels, axis=2)) * inside_x).sum((1, 2))
             + (np.abs(np.diff(pixels, axis=1)) * inside_y).sum((1, 2)))
    texture = steps / np.maximum(inside_x.sum((1, 2)) + inside_y.sum((1, 2)), 1)
    tone = np.digitize(intensity, TONE_EDGES)
    pattern = (texture > TEXTURE_EDGE).astype(int)

    n = len(labels)
    category = np.asarray(CLASS_NAMES)[labels]
    brand_id = rng.integers(len(BRANDS), size=n)
    brand = np.asarray(list(BRANDS))[brand_id]
    typical = np.array([BASE_PRICE[c] for c in category]) * np.array(list(BRANDS.values()))[brand_id]
    price = np.floor(typical * rng.lognormal(0.0, 0.3, size=n)) + 0.99
    popularity = rng.exponential(1.0, size=n) - 1.0  # mean 0, right-skewed: a few hits

    # "fit" only colours the text: relative to other items of the same category.
    median_coverage = pd.Series(coverage).groupby(labels).transform("median").to_numpy()
    fit = np.where(coverage >= median_coverage, "relaxed", "slim")
    template = rng.integers(len(DESCRIPTIONS), size=n)
    titles, descriptions = [], []
    for i in range(n):
        words = {"tone": TONES[tone[i]], "pattern": PATTERNS[pattern[i]], "Pattern": PATTERNS[pattern[i]].capitalize(),
                 "pattern_phrase": PATTERN_PHRASE[PATTERNS[pattern[i]]], "article_noun": ARTICLE_NOUN[category[i]],
                 "brand": brand[i], "fit": fit[i], "price": price[i]}
        titles.append(f"{TONES[tone[i]].capitalize()} {PATTERNS[pattern[i]]} {NOUN[category[i]]} by {brand[i]}")
        descriptions.append(DESCRIPTIONS[template[i]].format(**words))

    items = pd.DataFrame({
        "item": np.arange(n), "category": category, "tone": np.asarray(TONES)[tone],
        "pattern": np.asarray(PATTERNS)[pattern], "coverage": coverage.astype(np.float64), "price": price,
        "brand": brand, "title": titles, "description": descriptions,
    })
    log_price = np.log(price)
    features = np.concatenate([
        np.eye(len(CLASS_NAMES))[labels], np.eye(len(TONES))[tone], np.eye(len(PATTERNS))[pattern],
        ((log_price - log_price.mean()) / max(log_price.std(), 1e-9))[:, None], popularity[:, None],
    ], axis=1)
    names = (*(f"category={c}" for c in CLASS_NAMES), *(f"tone={t}" for t in TONES),
             *(f"pattern={p}" for p in PATTERNS), "log_price", "popularity")
    return items, features, names


# ---------------------------------------------------------------- users
def _make_users(n_users: int, rng: np.random.Generator):
    n_cat, n_tone, n_pat = len(CLASS_NAMES), len(TONES), len(PATTERNS)
    category = rng.normal(0.0, 1.5, size=(n_users, n_cat))  # taste differs most across categories
    tone = rng.normal(0.0, 0.7, size=(n_users, n_tone))
    pattern = rng.normal(0.0, 0.5, size=(n_users, n_pat))
    price_sensitivity = rng.gamma(2.0, 0.3, size=n_users)
    popularity_susceptibility = rng.beta(2.0, 2.0, size=n_users)
    weights = np.concatenate([category, tone, pattern, -price_sensitivity[:, None],
                              popularity_susceptibility[:, None]], axis=1)
    # Heavy-tailed activity, mean 1: how much more than the minimum a user interacts.
    activity = rng.lognormal(-0.7**2 / 2, 0.7, size=n_users)
    users = pd.DataFrame({
        "user": np.arange(n_users),
        "favourite_category": np.asarray(CLASS_NAMES)[category.argmax(1)],
        "favourite_tone": np.asarray(TONES)[tone.argmax(1)],
        "favourite_pattern": np.asarray(PATTERNS)[pattern.argmax(1)],
        "price_sensitivity": price_sensitivity,
        "popularity_susceptibility": popularity_susceptibility,
        "rating_bias": rng.normal(0.0, 0.3, size=n_users),
        "activity": activity,
    })
    return users, weights


# ---------------------------------------------------------------- interactions
def _sample_without_replacement(shop: FashionShop, rng: np.random.Generator, users: np.ndarray,
                                counts: np.ndarray, temperature: float, chunk: int = 2048):
    """Gumbel top-k: the k largest of utility/T + Gumbel noise are a softmax sample without replacement."""
    picked_users, picked_items = [], []
    for start in range(0, len(users), chunk):  # chunks keep memory flat for many users
        block, k = users[start:start + chunk], counts[start:start + chunk]
        keys = shop.true_utility(users=block) / temperature + rng.gumbel(size=(len(block), shop.n_items))
        top = np.argpartition(-keys, k.max() - 1, axis=1)[:, :k.max()]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, 1), axis=1), 1)
        keep = np.arange(k.max()) < k[:, None]
        picked_users.append(np.repeat(block, k))
        picked_items.append(top[keep])
    return np.concatenate(picked_users), np.concatenate(picked_items)


def _reviews(items: pd.DataFrame, item: np.ndarray, rating: np.ndarray, aspects: np.ndarray,
             rng: np.random.Generator) -> list[str]:
    """One short review per interaction, about the aspect that mattered most to the user."""
    sentiment = np.where(rating >= 4, "positive", np.where(rating == 3, "neutral", "negative"))
    # Happy users praise what they liked most, unhappy ones blame what they disliked most.
    aspect = np.where(rating >= 4, aspects.argmax(1), aspects.argmin(1))
    pick = rng.random(len(item))
    noun = items["category"].map(NOUN).to_numpy()[item]
    tone, pattern = items["tone"].to_numpy()[item], items["pattern"].to_numpy()[item]
    price, brand = items["price"].to_numpy()[item], items["brand"].to_numpy()[item]
    reviews = []
    for n in range(len(item)):
        key = (sentiment[n], None if sentiment[n] == "neutral" else ASPECTS[aspect[n]])
        options = REVIEWS[key]
        reviews.append(options[int(pick[n] * len(options))].format(
            noun=noun[n], tone=tone[n], pattern=pattern[n], price=price[n], brand=brand[n]))
    return reviews


# ---------------------------------------------------------------- validation
def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_images(images, labels):
    if images is None:
        images = load_fashion_mnist(subset=True, verbose=False)
    if isinstance(images, FashionMNIST):
        images, labels = images.images, images.labels
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) == 0 or images.dtype != np.uint8:
        raise ValueError(f"images must be a non-empty uint8 array of shape (N, 28, 28), "
                         f"got {images.dtype} {images.shape}")
    if labels is None:
        raise ValueError("labels are required when images is an array (or pass a FashionMNIST object)")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer) \
            or labels.min() < 0 or labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"labels must be {len(images)} integers in 0..{len(CLASS_NAMES) - 1}, "
                         f"got {labels.dtype} {labels.shape}")
    return images, labels.astype(np.int64)
