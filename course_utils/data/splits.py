"""Train/validation/test protocols on a ratings frame (columns user, item[, rating, timestamp]).

Time ties need care: in MovieLens-100K about half of a user's consecutive
ratings share the same second. Sorting ties by item id would leak the id order
into the held-out item (the next item's id would usually be larger), which a
sequential model can learn. We keep the file's order with a *stable* sort on
the timestamp alone, or shuffle ties with a fixed seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from course_utils.data.movielens import validate_ratings


def interaction_matrix(frame: pd.DataFrame, n_users: int, n_items: int, binary: bool = True) -> sp.csr_matrix:
    """Sparse users × items matrix: 1 per interaction (binary) or the rating value.

    A repeated (user, item) pair counts once when ``binary``; with ratings it is an
    error, since scipy would silently add the two ratings up (4 + 5 = 9 stars).
    """
    if isinstance(n_users, bool) or isinstance(n_items, bool) or n_users <= 0 or n_items <= 0:
        raise ValueError(f"n_users and n_items must be positive, got {n_users} and {n_items}")
    if len(frame) == 0:
        return sp.csr_matrix((n_users, n_items), dtype=np.float32)
    validate_ratings(frame, n_users, n_items, allow_duplicates=binary)
    if not binary and "rating" not in frame.columns:
        raise ValueError(f"binary=False needs a 'rating' column; the frame has {list(frame.columns)}")
    values = np.ones(len(frame), np.float32) if binary else frame["rating"].to_numpy(np.float32)
    matrix = sp.csr_matrix((values, (frame["user"].to_numpy(np.int64), frame["item"].to_numpy(np.int64))),
                           shape=(n_users, n_items), dtype=np.float32)
    if binary:
        matrix.data[:] = 1.0  # repeated (user, item) pairs are summed by scipy; keep them binary
    matrix.sort_indices()
    return matrix


def check_interaction_matrix(X) -> sp.csr_matrix:
    """A users × items scipy sparse matrix with at least one interaction, as float32 CSR; else a clear error."""
    if not sp.issparse(X):
        raise TypeError(f"X must be a scipy sparse users × items matrix, got {type(X).__name__}")
    if X.nnz == 0:
        raise ValueError("X has no interactions; cannot fit a recommender on an empty matrix")
    return X.tocsr().astype(np.float32)


def check_users(users, n_users: int) -> np.ndarray:
    """``users`` as a 1-D int64 array of valid row indices; a clear error otherwise.

    NumPy reads index -1 as "the last row", so a bad id would silently score
    another user instead of failing.
    """
    users = np.asarray(users)
    if users.ndim != 1 or not (np.issubdtype(users.dtype, np.integer) or users.size == 0):
        raise TypeError(f"users must be a 1-D array of integer ids, got dtype {users.dtype} and shape {users.shape}")
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"user ids must lie in [0, {n_users}), got range [{users.min()}, {users.max()}]")
    return users.astype(np.int64, copy=False)


def user_sequences(frame: pd.DataFrame, n_users: int) -> list[np.ndarray]:
    """Each user's items in the frame's row order (time order for frames made by these splits)."""
    items = frame["item"].to_numpy(np.int64)
    users = frame["user"].to_numpy(np.int64)
    order = np.argsort(users, kind="stable")  # stable: keeps time order within a user
    counts = np.bincount(users, minlength=n_users)
    return np.split(items[order], np.cumsum(counts)[:-1])


@dataclass
class History:
    """What a model may look at when it scores users: the known interactions, as a matrix and in time order."""

    matrix: sp.csr_matrix
    sequences: list[np.ndarray]


@dataclass
class Split:
    """A train / validation / test split of one ratings frame.

    ``history(stage)`` is what a model sees when predicting ``stage``: the training
    part for validation, training plus validation for the test.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    n_users: int
    n_items: int
    protocol: str
    _cache: dict = field(default_factory=dict, repr=False)

    STAGES = ("valid", "test")

    def _check_stage(self, stage: str) -> None:
        if stage not in self.STAGES:
            raise ValueError(f"stage must be one of {self.STAGES}, got {stage!r}")

    def history_frame(self, stage: str) -> pd.DataFrame:
        self._check_stage(stage)
        if stage == "valid":
            return self.train
        both = pd.concat([self.train, self.valid], ignore_index=True)
        if "timestamp" not in both.columns:  # e.g. a random split of untimed data: no order to keep
            return both.sort_values("user", kind="stable").reset_index(drop=True)
        return _time_sorted(both)

    def history(self, stage: str) -> History:
        if ("history", stage) not in self._cache:
            frame = self.history_frame(stage)
            self._cache[("history", stage)] = History(
                interaction_matrix(frame, self.n_users, self.n_items),
                user_sequences(frame, self.n_users))
        return self._cache[("history", stage)]

    def targets(self, stage: str) -> sp.csr_matrix:
        self._check_stage(stage)
        return interaction_matrix(getattr(self, stage), self.n_users, self.n_items)

    def train_matrix(self) -> sp.csr_matrix:
        return self.history("valid").matrix

    def summary(self) -> pd.DataFrame:
        rows = [(name, len(part), part["user"].nunique(), part["item"].nunique())
                for name, part in (("train", self.train), ("valid", self.valid), ("test", self.test))]
        return pd.DataFrame(rows, columns=["part", "interactions", "users", "items"]).set_index("part")


def _time_sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by user then timestamp, keeping the incoming order for ties (stable mergesort)."""
    if "timestamp" not in frame.columns:
        raise ValueError(f"a time-based split needs a 'timestamp' column; the frame has {list(frame.columns)}")
    return frame.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)


def _checked_ratings(ratings: pd.DataFrame, n_users: int | None, n_items: int | None,
                     needs_time: bool) -> tuple[pd.DataFrame, int, int]:
    """Validate a ratings frame before any split touches it; return it with int64 ids and the sizes.

    Checking first matters: ``ratings["user"].max()`` on a frame without that
    column, or an empty one, fails with an error that says nothing useful, and
    repeated (user, item) pairs would only surface later in ``evaluate``.
    """
    validate_ratings(ratings, allow_duplicates=False)
    if needs_time and "timestamp" not in ratings.columns:
        raise ValueError(f"a time-based split needs a 'timestamp' column; the frame has {list(ratings.columns)}")
    if ratings["user"].dtype != np.int64 or ratings["item"].dtype != np.int64:  # e.g. pandas' nullable Int64
        ratings = ratings.astype({"user": np.int64, "item": np.int64})
    if n_users is None:
        n_users = int(ratings["user"].max()) + 1
    if n_items is None:
        n_items = int(ratings["item"].max()) + 1
    validate_ratings(ratings, n_users, n_items)
    return ratings, n_users, n_items


def _break_ties(ratings: pd.DataFrame, tie_break: str, seed: int) -> pd.DataFrame:
    if tie_break == "file":
        return ratings
    if tie_break == "shuffle":
        return ratings.sample(frac=1.0, random_state=seed)
    if tie_break == "item_id":  # kept only so the lesson can show the leak it causes
        return ratings.sort_values("item", kind="stable")
    raise ValueError(f"tie_break must be 'file', 'shuffle' or 'item_id', got {tie_break!r}")


def leave_one_out_split(ratings: pd.DataFrame, n_users: int | None = None, n_items: int | None = None,
                        tie_break: str = "file", seed: int = 0, min_interactions: int = 3) -> Split:
    """The course's main protocol: per user, the last interaction is test and the one before is validation.

    Users with fewer than ``min_interactions`` keep everything in training.
    """
    ratings, n_users, n_items = _checked_ratings(ratings, n_users, n_items, needs_time=True)
    if min_interactions < 3:
        raise ValueError(f"min_interactions must be at least 3 (train, valid, test), got {min_interactions}")
    ordered = _time_sorted(_break_ties(ratings, tie_break, seed))
    from_end = ordered.groupby("user").cumcount(ascending=False).to_numpy()
    size = ordered.groupby("user")["item"].transform("size").to_numpy()
    eligible = size >= min_interactions
    test = eligible & (from_end == 0)
    valid = eligible & (from_end == 1)
    train = ~(test | valid)
    return Split(ordered[train].reset_index(drop=True), ordered[valid].reset_index(drop=True),
                 ordered[test].reset_index(drop=True), n_users, n_items, protocol=f"loo-time[{tie_break}]")


def temporal_split(ratings: pd.DataFrame, valid_frac: float = 0.1, test_frac: float = 0.1,
                   n_users: int | None = None, n_items: int | None = None) -> Split:
    """Global time cut: the latest ``test_frac`` of all interactions is test, the slice before it validation.

    Validation and test rows of users who have no earlier interaction are dropped,
    since a collaborative model cannot score a user it has never seen.
    """
    for name, frac in (("valid_frac", valid_frac), ("test_frac", test_frac)):
        if not 0 < frac < 1:
            raise ValueError(f"{name} must lie in (0, 1), got {frac}")
    if valid_frac + test_frac >= 1:
        raise ValueError(f"valid_frac + test_frac must be < 1, got {valid_frac + test_frac}")
    ratings, n_users, n_items = _checked_ratings(ratings, n_users, n_items, needs_time=True)
    ordered = ratings.sort_values("timestamp", kind="stable").reset_index(drop=True)
    cut_valid, cut_test = (int(len(ordered) * (1 - valid_frac - test_frac)), int(len(ordered) * (1 - test_frac)))
    train, valid, test = ordered[:cut_valid], ordered[cut_valid:cut_test], ordered[cut_test:]
    valid = valid[valid["user"].isin(train["user"])]
    test = test[test["user"].isin(pd.concat([train["user"], valid["user"]]))]
    parts = [_time_sorted(p) for p in (train, valid, test)]
    return Split(*parts, n_users, n_items, protocol="temporal-global")


def random_ratio_split(ratings: pd.DataFrame, test_frac: float = 0.2, valid_frac: float = 0.0, seed: int = 0,
                       n_users: int | None = None, n_items: int | None = None) -> Split:
    """Per user, a random ``test_frac`` of interactions is test (and ``valid_frac`` validation); time is ignored."""
    if not 0 < test_frac < 1 or not 0 <= valid_frac < 1 or test_frac + valid_frac >= 1:
        raise ValueError(f"need 0 < test_frac, 0 <= valid_frac and a sum below 1; got {test_frac}, {valid_frac}")
    ratings, n_users, n_items = _checked_ratings(ratings, n_users, n_items, needs_time=False)
    rng = np.random.default_rng(seed)
    shuffled = ratings.iloc[rng.permutation(len(ratings))].reset_index(drop=True)
    position = shuffled.groupby("user").cumcount().to_numpy()
    size = shuffled.groupby("user")["item"].transform("size").to_numpy()
    n_test = np.floor(size * test_frac).astype(int)
    n_valid = np.floor(size * valid_frac).astype(int)
    test = position < n_test
    valid = (position >= n_test) & (position < n_test + n_valid)
    train = ~(test | valid)
    parts = [shuffled[m].sort_values("user", kind="stable").reset_index(drop=True) for m in (train, valid, test)]
    return Split(*parts, n_users, n_items, protocol=f"random-ratio[{test_frac:g}]")


def item_id_order_signal(split: Split) -> pd.Series:
    """Share of users whose validation / test item has a larger id than the item just before it.

    With no leak both shares sit near 0.5; tie-breaking by item id pushes them up.
    """
    last_train = split.train.groupby("user")["item"].last()
    valid = split.valid.set_index("user")["item"]
    test = split.test.set_index("user")["item"]
    return pd.Series({"valid id > previous id": float((valid > last_train.loc[valid.index]).mean()),
                      "test id > previous id": float((test > valid.loc[test.index]).mean())})


@dataclass
class HeldOutUserSplit:
    """Liang et al. (2018)'s protocol for Mult-VAE: whole users are held out.

    Models train on ``train_users``. For each validation or test user, the
    ``fold_in`` part (80% of their interactions) is shown to the model and the
    ``heldout`` part is what it must rank. It offers the same ``history`` /
    ``targets`` interface as ``Split``, so ``evaluation.evaluate`` accepts both;
    only models that score users from their history (fold-in) can run on it.
    """

    train: pd.DataFrame
    valid_fold_in: pd.DataFrame
    valid_heldout: pd.DataFrame
    test_fold_in: pd.DataFrame
    test_heldout: pd.DataFrame
    n_users: int
    n_items: int
    protocol: str = "heldout-users"
    _cache: dict = field(default_factory=dict, repr=False)

    STAGES = ("valid", "test")

    def _part(self, stage: str, kind: str) -> pd.DataFrame:
        if stage not in self.STAGES:
            raise ValueError(f"stage must be one of {self.STAGES}, got {stage!r}")
        return getattr(self, f"{stage}_{kind}")

    def history(self, stage: str) -> History:
        """The fold-in interactions of the ``stage`` users (other users' rows are empty)."""
        if stage not in self._cache:
            frame = self._part(stage, "fold_in")
            self._cache[stage] = History(interaction_matrix(frame, self.n_users, self.n_items),
                                         user_sequences(frame, self.n_users))
        return self._cache[stage]

    def targets(self, stage: str) -> sp.csr_matrix:
        return interaction_matrix(self._part(stage, "heldout"), self.n_users, self.n_items)

    def train_matrix(self) -> sp.csr_matrix:
        """Interactions of the training users only: what a model is fitted on."""
        return interaction_matrix(self.train, self.n_users, self.n_items)


def heldout_users_split(ratings: pd.DataFrame, n_heldout_users: int, fold_in_frac: float = 0.8, seed: int = 0,
                        n_users: int | None = None, n_items: int | None = None) -> HeldOutUserSplit:
    """Hold out ``n_heldout_users`` users for validation and as many for test; split each one's items 80/20."""
    ratings, n_users, n_items = _checked_ratings(ratings, n_users, n_items, needs_time=False)
    users = np.unique(ratings["user"].to_numpy())
    if n_heldout_users <= 0 or 2 * n_heldout_users >= len(users):
        raise ValueError(f"n_heldout_users must be positive and leave training users: got {n_heldout_users} "
                         f"of {len(users)} users")
    if not 0 < fold_in_frac < 1:
        raise ValueError(f"fold_in_frac must lie in (0, 1), got {fold_in_frac}")
    rng = np.random.default_rng(seed)
    permuted = rng.permutation(users)
    valid_users, test_users = permuted[:n_heldout_users], permuted[n_heldout_users:2 * n_heldout_users]

    def fold(part_users):
        part = ratings[ratings["user"].isin(part_users)]
        part = part.iloc[rng.permutation(len(part))]
        position = part.groupby("user").cumcount().to_numpy()
        size = part.groupby("user")["item"].transform("size").to_numpy()
        keep = position < np.ceil(size * fold_in_frac)
        return part[keep].reset_index(drop=True), part[~keep].reset_index(drop=True)

    train = ratings[~ratings["user"].isin(permuted[:2 * n_heldout_users])].reset_index(drop=True)
    return HeldOutUserSplit(train, *fold(valid_users), *fold(test_users), n_users, n_items)
