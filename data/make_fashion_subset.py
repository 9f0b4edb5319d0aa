"""Build the shipped Fashion-MNIST subset from the Debian package's IDX files.

    python data/make_fashion_subset.py            # writes data/fashion_mnist_subset.npz (+ .sha256)

The selection logic lives in ``course_utils.data.fashion_mnist`` so that the
loader can rebuild exactly the same subset when the shipped file is absent.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a plain script, the repository is not on sys.path

from course_utils.data.fashion_mnist import (  # noqa: E402
    CLASS_NAMES, DEBIAN_DIR, SUBSET_FILE, SUBSET_PER_CLASS, SUBSET_SEED, build_subset, save_subset,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", type=Path, default=DEBIAN_DIR, help="folder with the gzipped IDX files")
    parser.add_argument("--out", type=Path, default=REPO / "data" / SUBSET_FILE, help="output .npz")
    parser.add_argument("--per-class", type=int, default=SUBSET_PER_CLASS, help="images per class")
    parser.add_argument("--seed", type=int, default=SUBSET_SEED, help="seed of the selection")
    args = parser.parse_args(argv)
    if args.per_class <= 0:
        parser.error(f"--per-class must be positive, got {args.per_class}")

    subset = build_subset(args.source_dir, args.per_class, args.seed)
    digest = save_subset(subset, args.out)
    size_mb = args.out.stat().st_size / 1e6
    print(f"wrote {args.out} ({len(subset['labels']):,} images, {len(CLASS_NAMES)} classes, {size_mb:.2f} MB)")
    print(f"sha256 {digest}")


if __name__ == "__main__":
    main()
