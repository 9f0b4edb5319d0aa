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
    with pytest.raises(ValueError, match="'user' has 1 missing id"):
        validate_ratings(pd.DataFrame({"user": pd.array([0, None], dtype="Int64"), "item": [0, 1]}))
    with pytest.raises(ValueError, match="'timestamp' has 1 missing or infinite"):
        validate_ratings(pd.DataFrame({"user": [0, 1], "item": [0, 1], "timestamp": [1.0, np.nan]}))
    with pytest.raises(ValueError, match="'rating' has 1 missing or infinite"):
        validate_ratings(pd.DataFrame({"user": [0, 1], "item": [0, 1], "rating": [np.inf, 4.0]}))
    with pytest.raises(ValueError, match="drop_duplicates"):
        validate_ratings(pd.DataFrame({"user": [0, 0], "item": [1, 1]}), allow_duplicates=False)


def _damaged_recbole_copy(tmp_path, ext, damage):
    """A copy of the real RecBole ml-100k files with one of them damaged as a broken install would be."""
    copy = tmp_path / "ml-100k"
    copy.mkdir()
    for name in ("inter", "item", "user"):
        (copy / f"ml-100k.{name}").write_bytes((ml_module.recbole_dir() / f"ml-100k.{name}").read_bytes())
    target = copy / f"ml-100k.{ext}"
    raw = target.read_bytes()
    if damage == "truncated":
        target.write_bytes(raw[: len(raw) // 2])
    elif damage == "bit-flipped":
        target.write_bytes(raw[:1000] + bytes([raw[1000] ^ 0x01]) + raw[1001:])
    elif damage == "folder-in-place":
        target.unlink()
        target.mkdir()
    return copy


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped", "folder-in-place"])
@pytest.mark.parametrize("ext", ["inter", "item", "user"])
def test_damaged_recbole_files_are_refused_with_a_fix(tmp_path, monkeypatch, ext, damage):
    copy = _damaged_recbole_copy(tmp_path, ext, damage)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ml_module, "recbole_dir", lambda: copy)
    with pytest.raises(RuntimeError) as info:
        load_movielens(verbose=False, allow_download=False)
    message = str(info.value)
    assert f"ml-100k.{ext}" in message and "pip install --force-reinstall --no-deps recbole==1.2.1" in message


def test_counts_are_checked_whatever_the_source(movielens):
    """A source with a row missing is refused even when it parses (the checksum is one guard, the counts another)."""
    short = movielens.ratings.iloc[1:]
    raw = short.assign(user_id=short.user + 1, item_id=short.item + 1)
    items = movielens.items.drop(columns="item")
    users = movielens.users.drop(columns="user")
    with pytest.raises(ValueError, match="99,999 ratings, 943 users and 1682 items, expected 100,000"):
        ml_module._finish(raw, items, users, source="test")


def test_cache_that_is_a_folder_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    (tmp_path / "movielens" / "ml-100k.zip").mkdir(parents=True)
    data = load_movielens(verbose=False, allow_download=False)
    assert "recbole" in data.source and not (tmp_path / "movielens" / "ml-100k.zip").exists()


def test_install_hints_use_the_pins_of_offline_assets():
    from course_utils.config import OFFLINE_ASSETS_FILE, offline_requirement
    from course_utils.hub import describe_models

    pins = [line for line in OFFLINE_ASSETS_FILE.read_text().splitlines() if line and not line.startswith("#")]
    assert offline_requirement("recbole") in pins and "==" in offline_requirement("recbole")
    for row in describe_models():
        assert row["install"].split()[-1] in pins
    makefile = (OFFLINE_ASSETS_FILE.parents[1] / "Makefile").read_text()
    readme = (OFFLINE_ASSETS_FILE.parents[1] / "README.md").read_text()
    assert "-r $(OFFLINE_ASSETS)" in makefile and "OFFLINE_ASSETS := course_utils/offline-assets.txt" in makefile
    assert "course_utils/offline-assets.txt" in readme
    for pin in pins:  # no other copy of a pin, which could drift
        assert pin not in makefile and pin.split("==")[0] + "==" not in readme
