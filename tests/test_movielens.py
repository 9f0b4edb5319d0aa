import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from course_utils.data import movielens as ml_module
from course_utils.data.movielens import GENRES, load_movielens, validate_ratings


def test_real_movielens_shape_and_schema(movielens):
    assert (len(movielens.ratings), movielens.n_users, movielens.n_items) == (100_000, 943, 1682)
    assert list(movielens.ratings.columns) == ["user", "item", "rating", "timestamp"]
    assert movielens.ratings["rating"].between(1, 5).all()
    assert movielens.items.loc[0, "title"] == "Toy Story"
    assert movielens.items.loc[0, "genres"] == ("Animation", "Children's", "Comedy")
    assert movielens.users["gender"].isin(["M", "F"]).all()
    assert "recbole" in movielens.source


def _grouplens_zip(data) -> bytes:
    """Rebuild a GroupLens-format zip from the loaded data, to exercise the zip reader on real rows."""
    ratings = data.ratings.assign(user=data.ratings.user + 1, item=data.ratings.item + 1,
                                  rating=data.ratings.rating.astype(int))
    flags = np.array([[g in row for g in GENRES] for row in data.items["genres"]], dtype=int)
    dates = data.items["year"].map(lambda y: "" if pd.isna(y) else f"01-Jan-{y}")
    titles = data.items["title"] + data.items["year"].map(lambda y: "" if pd.isna(y) else f" ({y})")
    item_rows = ["|".join([str(i + 1), t, d, "", "http://x", *map(str, f)])
                 for i, (t, d, f) in enumerate(zip(titles, dates, flags))]
    user_rows = data.users.assign(user=data.users.user + 1)[["user", "age", "gender", "occupation", "zip_code"]]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-100k/u.data", ratings.to_csv(sep="\t", header=False, index=False))
        archive.writestr("ml-100k/u.item", "\n".join(item_rows).encode("latin-1"))
        archive.writestr("ml-100k/u.user", user_rows.to_csv(sep="|", header=False, index=False))
    return buffer.getvalue()


def test_cache_source_gives_same_schema_and_corrupt_cache_is_dropped(movielens, tmp_path, monkeypatch):
    import hashlib

    payload = _grouplens_zip(movielens)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(ml_module, "ML100K_SHA256", hashlib.sha256(payload).hexdigest())
    cached = tmp_path / "movielens" / "ml-100k.zip"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(payload)
    from_cache = load_movielens(verbose=False)
    assert from_cache.source.startswith("cache")
    pd.testing.assert_frame_equal(from_cache.ratings, movielens.ratings)
    pd.testing.assert_frame_equal(from_cache.users, movielens.users)
    pd.testing.assert_frame_equal(from_cache.items[["item", "title", "year", "genres"]],
                                  movielens.items[["item", "title", "year", "genres"]])

    cached.write_bytes(payload[:-100])  # a partial file must never be used
    fallback = load_movielens(verbose=False)
    assert "recbole" in fallback.source and not cached.exists()


def test_all_sources_failing_lists_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(ml_module, "recbole_dir", lambda: None)
    with pytest.raises(RuntimeError) as info:
        load_movielens(verbose=False, allow_download=False)
    message = str(info.value)
    assert "cache" in message and "recbole" in message and "download" in message and "TLS" in message


def test_validate_ratings_errors():
    with pytest.raises(ValueError, match="missing column"):
        validate_ratings(pd.DataFrame({"user": [0]}))
    with pytest.raises(ValueError, match="empty"):
        validate_ratings(pd.DataFrame({"user": [], "item": []}))
    with pytest.raises(ValueError, match="lie in"):
        validate_ratings(pd.DataFrame({"user": [0, 5], "item": [0, 1]}), n_users=3)
    with pytest.raises(TypeError):
        validate_ratings([(0, 1)])
