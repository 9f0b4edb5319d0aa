"""MovieLens-100K (Harper & Konstan, 2015): 100,000 real ratings of 1,682 movies by 943 users.

Sources are tried in a fixed order and the one used is reported:

1. a cached copy of GroupLens's own ``ml-100k.zip`` (verified by SHA-256 before use);
2. the atomic files that the PyPI package ``recbole==1.2.1`` ships (read as data only);
3. a download of the official zip from GroupLens, verified before any member is read.

Every source yields the same schema. GroupLens's terms forbid redistribution,
so the course never commits these files; see ``data/README.md``.
"""
from __future__ import annotations

import importlib.util
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from course_utils.config import cache_dir, is_offline, offline_requirement
from course_utils.io import ChecksumError, download, remove_path, sha256_file, verify_sha256

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_SHA256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
RATING_COLUMNS = ("user", "item", "rating", "timestamp")
# MovieLens-100K's published size: every source must give exactly this (a short file is damage).
N_RATINGS, N_USERS, N_ITEMS = 100_000, 943, 1_682
# SHA-256 of the atomic files inside recbole==1.2.1 (pinned in course_utils/offline-assets.txt).
# Pinned here, in the code: a truncated ml-100k.inter otherwise loads 49,999 ratings without a word.
RECBOLE_SHA256 = {
    "inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}


@dataclass
class MovieLens:
    """MovieLens-100K in the course's schema.

    ratings: user, item (0-based contiguous ints), rating (1-5), timestamp (Unix s),
             in the original file order (which matters for tie-breaking, see ``splits``).
    items:   item, movielens_id, title, year (nullable), genres (tuple of names).
    users:   user, movielens_id, age, gender, occupation, zip_code.
    """

    ratings: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    source: str

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)


def _finish(raw_ratings: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, source: str) -> MovieLens:
    """Map 1-based MovieLens ids to 0-based indices and fix dtypes, identically for every source."""
    ratings = pd.DataFrame({
        "user": raw_ratings["user_id"].astype(np.int64) - 1,
        "item": raw_ratings["item_id"].astype(np.int64) - 1,
        "rating": raw_ratings["rating"].astype(np.float32),
        "timestamp": raw_ratings["timestamp"].astype(np.int64),
    })
    items = items.sort_values("movielens_id").reset_index(drop=True)
    items.insert(0, "item", items["movielens_id"].astype(np.int64) - 1)
    items["year"] = items["year"].astype("Int64")
    users = users.sort_values("movielens_id").reset_index(drop=True)
    users.insert(0, "user", users["movielens_id"].astype(np.int64) - 1)
    users["age"] = users["age"].astype(np.int64)
    for name, frame in (("items", items), ("users", users)):
        key = "item" if name == "items" else "user"
        if not np.array_equal(frame[key].to_numpy(), np.arange(len(frame))):
            raise ValueError(f"{source}: {name} ids are not contiguous from 1; the files look damaged")
    counts = (len(ratings), len(users), len(items))
    if counts != (N_RATINGS, N_USERS, N_ITEMS):
        raise ValueError(f"{source}: {counts[0]:,} ratings, {counts[1]} users and {counts[2]} items, expected "
                         f"{N_RATINGS:,}, {N_USERS} and {N_ITEMS}; the files look damaged")
    return MovieLens(ratings=ratings, items=items, users=users, source=source)


_YEAR_SUFFIX = re.compile(r"\s*\((\d{4})\)\s*$")


def _split_title(title: str) -> str:
    """GroupLens titles end in '(1995)'; RecBole's do not. Strip the year so both agree."""
    return _YEAR_SUFFIX.sub("", title).strip()


def _read_grouplens(open_member) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Parse u.data / u.item / u.user given a function that opens a member by name."""
    raw = pd.read_csv(open_member("u.data"), sep="\t", header=None,
                      names=["user_id", "item_id", "rating", "timestamp"])
    item_cols = ["movielens_id", "title", "release_date", "video_date", "imdb_url", *GENRES]
    raw_items = pd.read_csv(open_member("u.item"), sep="|", header=None, names=item_cols,
                            encoding="latin-1")
    flags = raw_items[list(GENRES)].to_numpy().astype(bool)
    items = pd.DataFrame({
        "movielens_id": raw_items["movielens_id"],
        "title": raw_items["title"].astype(str).map(_split_title),
        "year": pd.to_datetime(raw_items["release_date"], format="%d-%b-%Y", errors="coerce").dt.year,
        "genres": [tuple(g for g, on in zip(GENRES, row) if on) for row in flags],
    })
    users = pd.read_csv(open_member("u.user"), sep="|", header=None,
                        names=["movielens_id", "age", "gender", "occupation", "zip_code"], dtype={"zip_code": str})
    return raw, items, users


def _load_zip(path: Path, source: str) -> MovieLens:
    verify_sha256(path, ML100K_SHA256)
    with zipfile.ZipFile(path) as archive:
        def open_member(name):
            return io.BytesIO(archive.read(f"ml-100k/{name}"))
        return _finish(*_read_grouplens(open_member), source=source)


def _reinstall_recbole() -> str:
    return f"Reinstall it: pip install --force-reinstall --no-deps {offline_requirement('recbole')}"


def recbole_dir() -> Path | None:
    """Folder of the ml-100k atomic files inside an installed ``recbole`` (found, never imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    return folder if folder.is_dir() else None


def _load_recbole(folder: Path) -> MovieLens:
    """Read RecBole's atomic files (tab-separated, typed headers such as ``user_id:token``), verified first."""
    for ext, expected in RECBOLE_SHA256.items():
        path = folder / f"ml-100k.{ext}"
        if not path.is_file():
            raise ChecksumError(f"{path} is missing or not a file. {_reinstall_recbole()}")
        if sha256_file(path) != expected:
            raise ChecksumError(f"{path} does not match its pinned SHA-256 (damaged or a different version). "
                                f"{_reinstall_recbole()}")

    def read(ext):
        frame = pd.read_csv(folder / f"ml-100k.{ext}", sep="\t", dtype=str, keep_default_na=False)
        frame.columns = [c.split(":")[0] for c in frame.columns]
        return frame

    inter, raw_items, raw_users = read("inter"), read("item"), read("user")
    raw = inter.rename(columns={"user_id": "user_id", "item_id": "item_id"})
    raw = raw.astype({"user_id": np.int64, "item_id": np.int64, "rating": float, "timestamp": float})
    items = pd.DataFrame({
        "movielens_id": raw_items["item_id"].astype(np.int64),
        "title": raw_items["movie_title"].map(_split_title),
        "year": pd.to_numeric(raw_items["release_year"], errors="coerce"),
        "genres": [tuple(g.split()) if g else ("unknown",) for g in raw_items["class"]],
    })
    users = pd.DataFrame({
        "movielens_id": raw_users["user_id"].astype(np.int64),
        "age": raw_users["age"].astype(np.int64),
        "gender": raw_users["gender"], "occupation": raw_users["occupation"],
        "zip_code": raw_users["zip_code"],
    })
    return _finish(raw, items, users, source=f"recbole package files ({folder})")


def validate_ratings(ratings: pd.DataFrame, n_users: int | None = None, n_items: int | None = None,
                     allow_duplicates: bool = True) -> None:
    """Check a ratings frame has the course's columns and sane values; raise ``ValueError`` if not.

    Checked: ``user`` and ``item`` hold non-negative integer ids without missing
    values (below ``n_users`` / ``n_items`` when given); ``rating`` and ``timestamp``,
    where present, are numbers without NaN. A missing timestamp would silently sort
    last and become a test item; a missing rating would poison any average.
    ``allow_duplicates=False`` also refuses repeated (user, item) pairs, which the
    splits need: a pair in both train and test would be a test item the user "has".
    """
    if not isinstance(ratings, pd.DataFrame):
        raise TypeError(f"ratings must be a pandas DataFrame, got {type(ratings).__name__}")
    missing = [c for c in ("user", "item") if c not in ratings.columns]
    if missing:
        raise ValueError(f"ratings frame is missing column(s) {missing}; it has {list(ratings.columns)}")
    if len(ratings) == 0:
        raise ValueError("ratings frame is empty")
    for col, bound in (("user", n_users), ("item", n_items)):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, np.integer)) or bound <= 0):
            raise ValueError(f"n_{col}s must be a positive integer, got {bound!r}")
        values = ratings[col]
        if values.isna().any():
            raise ValueError(f"column {col!r} has {int(values.isna().sum())} missing id(s); drop those rows first")
        if not pd.api.types.is_integer_dtype(values):
            raise ValueError(f"column {col!r} must hold integer indices, got dtype {values.dtype}")
        if values.min() < 0 or (bound is not None and values.max() >= bound):
            raise ValueError(f"column {col!r} must lie in [0, {bound}), got range [{values.min()}, {values.max()}]")
    for col in ("rating", "timestamp"):
        if col not in ratings.columns:
            continue
        values = ratings[col]
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)) \
                or pd.api.types.is_bool_dtype(values):
            raise ValueError(f"column {col!r} must hold numbers, got dtype {values.dtype}")
        bad = values.isna() | (np.isinf(values.to_numpy(np.float64, na_value=np.nan))
                               if pd.api.types.is_numeric_dtype(values) else False)
        if bad.any():
            raise ValueError(f"column {col!r} has {int(bad.sum())} missing or infinite value(s) "
                             f"(first at row {ratings.index[np.flatnonzero(bad)[0]]!r}); drop or fill them first")
    if not allow_duplicates:
        repeated = ratings.duplicated(["user", "item"], keep=False)
        if repeated.any():
            first = ratings[repeated].iloc[0]
            raise ValueError(
                f"ratings has {int(repeated.sum())} rows that repeat a (user, item) pair (first: user "
                f"{first['user']}, item {first['item']}); keep one row per pair, e.g. "
                "ratings.sort_values('timestamp', kind='stable').drop_duplicates(['user', 'item'], keep='last')")


def load_movielens(verbose: bool = True, allow_download: bool | None = None) -> MovieLens:
    """Load MovieLens-100K from the first source that works, and say which one it was.

    ``allow_download`` defaults to "when online". The error raised when nothing
    works lists every source tried and why it failed.
    """
    cached_zip = cache_dir("movielens") / "ml-100k.zip"
    tried = []

    if cached_zip.exists() or cached_zip.is_symlink():
        try:
            if not cached_zip.is_file():
                raise ChecksumError("not a file")
            data = _load_zip(cached_zip, source=f"cache ({cached_zip})")
        except (ChecksumError, zipfile.BadZipFile, KeyError, ValueError) as err:
            remove_path(cached_zip)  # never use a corrupt cache: drop it and fall through
            tried.append(f"cache {cached_zip}: corrupt ({err}); deleted")
        else:
            return _report(data, verbose)
    else:
        tried.append(f"cache {cached_zip}: not present")

    folder = recbole_dir()
    if folder is not None:
        try:
            return _report(_load_recbole(folder), verbose)
        except (ChecksumError, ValueError) as err:  # damaged package files: say so, try the download
            tried.append(f"recbole package files: {err}")
    else:
        tried.append(f"recbole package files: not installed (pip install --no-deps {offline_requirement('recbole')})")

    if allow_download is None:
        allow_download = not is_offline("files.grouplens.org")
    if allow_download:
        try:
            download(ML100K_URL, cached_zip, ML100K_SHA256)
            return _report(_load_zip(cached_zip, source=f"download from {ML100K_URL}"), verbose)
        except Exception as err:  # network, TLS and checksum failures all end up here
            tried.append(f"download {ML100K_URL}: {type(err).__name__}: {err}")
    else:
        tried.append(f"download {ML100K_URL}: skipped (offline)")
    raise RuntimeError(
        "Could not load MovieLens-100K. Tried, in order:\n  - " + "\n  - ".join(tried) +
        f"\nFixes: `pip install --force-reinstall --no-deps {offline_requirement('recbole')}` (it carries the files), "
        "or download "
        f"{ML100K_URL} in a browser (the host has had TLS certificate lapses) and save it as {cached_zip}."
    )


def _report(data: MovieLens, verbose: bool) -> MovieLens:
    if verbose:
        print(f"MovieLens-100K: {len(data.ratings):,} ratings, {data.n_users} users, "
              f"{data.n_items} items, from {data.source}")
    return data
