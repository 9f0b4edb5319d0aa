"""Notebooks reach data and models only through course_utils, so they run from any checkout (Colab included).

A path such as '../data/x.csv' works from notebooks/ in JupyterLab and nowhere else: not under
papermill with another working directory, not on Colab where the clone sits in /content.
"""
import ast
import json
import re
from pathlib import Path

import pytest

from course_utils.colab import SETUP_CELL_TAG

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PATHLIKE = re.compile(r"^\.{1,2}[/\\]|(^|[/\\])(data|notebooks|build|course_utils|slides)[/\\]"
                      r"|\.(csv|tsv|dat|npz|npy|pt|pth|ckpt|safetensors|gguf|parquet|zip|gz|pkl|json|txt|png|jpg)$",
                      re.I)
READERS = {"open", "read_csv", "read_table", "read_parquet", "read_json", "load", "loadtxt", "genfromtxt",
           "from_pretrained", "imread", "Path", "listdir", "glob", "chdir"}


def repository_paths(code: str) -> list[str]:
    """Every string literal in ``code`` that looks like a file path, or that a file reader is given."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in code.splitlines())
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            if "\n" not in text and "://" not in text and " " not in text and PATHLIKE.search(text):
                found.append(text)
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name in READERS:
                found += [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return sorted(set(found))


def test_the_check_catches_repository_paths():
    assert repository_paths("ratings = pd.read_csv('../data/ml-100k/u.data', sep='\\t')") == ["../data/ml-100k/u.data"]
    assert repository_paths("x = np.load('data/fashion.npz')") == ["data/fashion.npz"]
    assert repository_paths("with open('notes') as f: pass") == ["notes"]
    assert repository_paths("model = AutoModel.from_pretrained('checkpoints')") == ["checkpoints"]
    assert repository_paths("ml = load_movielens()\nprint('MovieLens / 100K: done.')\n%matplotlib inline") == []
    assert repository_paths("url = 'https://files.grouplens.org/datasets/movielens/ml-100k.zip'") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_no_repository_paths(path):
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] != "code" or SETUP_CELL_TAG in cell["metadata"].get("tags", []):
            continue
        found = repository_paths("".join(cell["source"]))
        assert not found, (f"{path.name} cell {cell.get('id')} reads {found}: load data and models through "
                           "course_utils (e.g. load_movielens(), load_fashion_mnist(), hub.load_llm()) instead")
