"""Fashion-MNIST (Zalando, MIT licence): real product images for the multimodal lessons.

Most lessons need only a small, fixed, class-balanced subset (3,000 images),
which ships with the repository so that they run offline. Sources are tried
in a fixed order and the one used is reported:

1. the shipped subset ``data/fashion_mnist_subset.npz`` (checked against its ``.sha256``);
2. the Debian/Ubuntu package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``);
3. a torchvision download into the course cache (needs the internet).

Note: Fashion-MNIST stores *negated* greyscale photos, so the background is 0
and dark garments have high pixel values. Plot with ``cmap="gray_r"`` to see
the products as they were photographed.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course_utils.config import cache_dir, is_offline
from course_utils.io import ChecksumError, atomic_write, file_lock, remove_path, sha256_file

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
SUBSET_FILE = "fashion_mnist_subset.npz"
SUBSET_PER_CLASS = 300
SUBSET_SEED = 0
# SHA-256 pinned in the code, not only beside the file: a subset rewritten together with
# its .sha256 would pass the sidecar check. Rebuilding with make_fashion_subset.py gives these bytes.
SUBSET_SHA256 = "22daaa4660ab22ecd66b9cea5d9e6e9ef819830f31532269b4a0e6756c4f9d03"
# SHA-256 of the unpacked IDX files of the original release (as torchvision stores them, and
# as the Debian .gz files decompress): a truncated or flipped copy is noticed before use.
IDX_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
REBUILD_HINT = (
    "Restore it with `git checkout -- data/fashion_mnist_subset.npz data/fashion_mnist_subset.npz.sha256`, "
    "or rebuild it with `python data/make_fashion_subset.py` (needs `apt install dataset-fashion-mnist`)."
)

# IDX type codes (third magic byte) -> big-endian NumPy dtypes, as in LeCun's MNIST format.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGES_MAGIC = 0x0803  # unsigned bytes, 3 dimensions (the header reads 2051)
LABELS_MAGIC = 0x0801  # unsigned bytes, 1 dimension (2049)


@dataclass(frozen=True)
class FashionMNIST:
    """Images (N x 28 x 28, uint8), their labels (N, uint8) and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: str
    source_index: np.ndarray  # row in the original 60,000-image train split

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def label_names(self) -> np.ndarray:
        """The class name of every image, handy for plot titles and DataFrames."""
        return np.asarray(self.class_names)[self.labels]


# ---------------------------------------------------------------- IDX files
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped) and check that its header matches its size.

    The header is two zero bytes, a type code, the number of dimensions, then one
    big-endian uint32 per dimension; the data follows in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'})")
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: IDX header truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header_size != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes), file holds {len(raw) - header_size}")
    data = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # native byte order, and a writable copy


def idx_magic(path: str | os.PathLike) -> int:
    """The first four bytes of an IDX file as one big-endian number (2051 for images)."""
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return int.from_bytes(handle.read(4), "big")


def read_fashion_idx(source_dir: str | os.PathLike = DEBIAN_DIR,
                     split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split ("train" or "t10k") from the original gzipped IDX files."""
    if split not in {"train", "t10k"}:
        raise ValueError(f"split must be 'train' or 't10k', got {split!r}")
    source_dir = Path(source_dir)
    images_path = source_dir / f"{split}-images-idx3-ubyte.gz"
    labels_path = source_dir / f"{split}-labels-idx1-ubyte.gz"
    for path, magic in ((images_path, IMAGES_MAGIC), (labels_path, LABELS_MAGIC)):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
        if idx_magic(path) != magic:
            raise ValueError(f"{path}: magic number {idx_magic(path)}, expected {magic}")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"{source_dir}: images {images.shape} and labels {labels.shape} are not 28x28 Fashion-MNIST")
    if labels.max(initial=0) >= len(CLASS_NAMES):
        raise ValueError(f"{labels_path}: label {labels.max()} outside 0..{len(CLASS_NAMES) - 1}")
    return images, labels


# ---------------------------------------------------------------- the subset
def balanced_subset(labels: np.ndarray, per_class: int = SUBSET_PER_CLASS, seed: int = SUBSET_SEED) -> np.ndarray:
    """Sorted indices of ``per_class`` images drawn without replacement from every class."""
    if not isinstance(per_class, (int, np.integer)) or per_class <= 0:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(len(CLASS_NAMES)):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(f"class {CLASS_NAMES[label]!r} has {len(members)} images, "
                             f"fewer than per_class={per_class}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    # Sorting keeps the original interleaving of classes, so the file needs no shuffling.
    return np.sort(np.concatenate(chosen))


def build_subset(source_dir: str | os.PathLike = DEBIAN_DIR, per_class: int = SUBSET_PER_CLASS,
                 seed: int = SUBSET_SEED) -> dict[str, np.ndarray]:
    """The class-balanced subset of the train split, as arrays ready for ``save_subset``."""
    images, labels = read_fashion_idx(source_dir, "train")
    index = balanced_subset(labels, per_class, seed)
    return {"images": images[index], "labels": labels[index], "source_index": index.astype(np.int64)}


def save_subset(subset: dict[str, np.ndarray], path: str | os.PathLike) -> str:
    """Write the subset as a compressed ``.npz`` and its ``.sha256`` beside it; return the hash."""
    path = Path(path)
    with atomic_write(path) as handle:
        np.savez_compressed(handle, **subset)
    digest = sha256_file(path)
    with atomic_write(path.with_name(path.name + ".sha256"), "w") as handle:
        handle.write(f"{digest}  {path.name}\n")  # the format `sha256sum -c` reads
    return digest


def load_subset_file(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """Read a subset after checking it against its ``.sha256`` (and ``expected_sha256``, when pinned).

    Raises ``ChecksumError`` if either check fails: the shipped subset is loaded
    with the hash pinned in this module, so a file rewritten with a matching
    ``.sha256`` beside it is still refused.
    """
    path = Path(path)
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.is_file():
        raise ChecksumError(f"{path}: checksum file {sidecar.name} is missing, "
                            f"so the data cannot be verified. {REBUILD_HINT}")
    expected = sidecar.read_text().split()[0].lower() if sidecar.read_text().split() else ""
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(f"{path} is corrupt: SHA-256 checksum is {actual}, expected {expected}. {REBUILD_HINT}")
    if expected_sha256 is not None and actual != expected_sha256:
        raise ChecksumError(f"{path} is not the course's subset: SHA-256 checksum is {actual}, but the code "
                            f"pins {expected_sha256}. {REBUILD_HINT}")
    with np.load(path) as npz:
        subset = {key: npz[key] for key in ("images", "labels", "source_index")}
    if subset["images"].dtype != np.uint8 or subset["images"].shape[1:] != (28, 28):
        raise ValueError(f"{path}: images have dtype {subset['images'].dtype} and shape {subset['images'].shape}")
    return subset


# ---------------------------------------------------------------- the loader
def default_data_dir() -> Path:
    """The repository's ``data/`` folder, or ``$COURSE_DATA_DIR`` when set (tests point it elsewhere)."""
    override = os.environ.get("COURSE_DATA_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "data"


def idx_problem(folder: str | os.PathLike, gzipped: bool = False) -> str | None:
    """Why the IDX files in ``folder`` are not the original Fashion-MNIST, or None (checked by pinned SHA-256)."""
    for name, expected in IDX_SHA256.items():
        path = Path(folder) / (name + ".gz" if gzipped else name)
        if not path.is_file():
            return f"{path.name} is missing" + (" (a folder is in its place)" if path.is_dir() else "")
        if gzipped:
            digest = hashlib.sha256()
            try:
                with gzip.open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
            except (OSError, EOFError) as error:
                return f"{path.name} does not unpack ({error})"
            actual = digest.hexdigest()
        else:
            actual = sha256_file(path)
        if actual != expected:
            return f"{path.name} does not match its pinned SHA-256 (truncated or damaged)"
    return None


def _from_torchvision(subset: bool) -> tuple[dict[str, np.ndarray], str]:
    try:
        from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST
    except ImportError as error:
        raise RuntimeError(f"torchvision is not installed ({error}); run `pip install torchvision`") from error
    root = cache_dir("fashion-mnist")
    raw = root / "FashionMNIST" / "raw"
    with file_lock(raw):  # one process at a time checks, deletes or downloads the cache
        # torchvision only checks that the unpacked files exist, so a truncated copy would fail
        # the same way on every run: verify it, and delete a bad one so that it is fetched again.
        if raw.exists() or raw.is_symlink():
            problem = idx_problem(raw)
            if problem:
                print(f"[fashion-mnist] the torchvision cache {raw} is not usable: {problem}. Deleting it.")
                remove_path(raw)
        offline = is_offline()
        if offline and not raw.exists():
            raise RuntimeError(f"offline, and no intact earlier download in {raw}; go online once to fetch it")
        # Offline we can still use an earlier download; torchvision raises if there is none.
        dataset = TorchvisionFashionMNIST(root=str(root), train=True, download=not offline)
        problem = idx_problem(raw)
        if problem:  # a download cut short, or a server sending something else
            remove_path(raw)
            raise ChecksumError(f"the torchvision download in {raw} is damaged ({problem}); deleted it, "
                                "run again to fetch it afresh")
    images, labels = dataset.data.numpy().astype(np.uint8), dataset.targets.numpy().astype(np.uint8)
    index = balanced_subset(labels) if subset else np.arange(len(labels))
    arrays = {"images": images[index], "labels": labels[index], "source_index": index.astype(np.int64)}
    return arrays, f"torchvision download in {root}"


def load_fashion_mnist(subset: bool = True, verbose: bool = True, *, data_dir: str | os.PathLike | None = None,
                       debian_dir: str | os.PathLike = DEBIAN_DIR) -> FashionMNIST:
    """Load the 3,000-image balanced subset (default) or the full 60,000-image train split.

    ``data_dir`` and ``debian_dir`` override where the shipped subset and the
    Debian files are looked for. A corrupt shipped file raises ``ChecksumError``
    rather than falling back silently: the repository itself is broken then.
    """
    failures = []

    def try_source(name, load):
        try:
            return load()
        except (OSError, ValueError, RuntimeError) as error:
            if isinstance(error, ChecksumError):
                raise
            failures.append(f"  - {name}: {error}")
            return None

    def shipped():
        path = Path(data_dir) if data_dir is not None else default_data_dir()
        path = path / SUBSET_FILE
        if path.is_dir():
            raise ChecksumError(f"{path} is a folder, not the subset file. {REBUILD_HINT}")
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
        return load_subset_file(path, SUBSET_SHA256), f"shipped subset {path}"

    def debian():
        present = (Path(debian_dir) / "train-images-idx3-ubyte.gz").exists()
        if present and (problem := idx_problem(debian_dir, gzipped=True)):
            raise ValueError(f"{debian_dir}: {problem}; reinstall it: sudo apt install --reinstall "
                             "dataset-fashion-mnist")
        if subset:
            arrays = build_subset(debian_dir)
        else:
            images, labels = read_fashion_idx(debian_dir, "train")
            arrays = {"images": images, "labels": labels, "source_index": np.arange(len(labels))}
        return arrays, f"Debian package dataset-fashion-mnist ({debian_dir})"

    def torchvision():
        return _from_torchvision(subset)

    sources = [("shipped subset", shipped)] if subset else []
    sources += [("Debian files", debian), ("torchvision", torchvision)]
    for name, load in sources:
        found = try_source(name, load)
        if found is not None:
            arrays, where = found
            data = FashionMNIST(arrays["images"], arrays["labels"], CLASS_NAMES, where, arrays["source_index"])
            if verbose:
                print(f"Fashion-MNIST: {len(data):,} images from {where}")
            return data
    raise FileNotFoundError(
        "Could not load Fashion-MNIST. Sources tried, in order:\n" + "\n".join(failures) + "\n"
        "Fix one of them: restore data/fashion_mnist_subset.npz from git, "
        "`sudo apt install dataset-fashion-mnist`, or `pip install torchvision` and go online once."
    )
