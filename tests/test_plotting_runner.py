import matplotlib

matplotlib.use("Agg")

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from course_utils import course_runner
from course_utils.plotting import plot_leaderboard, plot_learning_curves, plot_long_tail, set_theme, show_images
from course_utils.syllabus import LESSONS, course_map
from course_utils.training import FitResult


def test_plots_draw_what_they_are_given():
    set_theme()
    run = FitResult(pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.0, 0.5, 0.4], "valid": [0.1, 0.3, 0.2]}), 2, 0.3, 1.0)
    axes = plot_learning_curves({"model": run})
    assert list(axes[0].lines[0].get_ydata()) == [1.0, 0.5, 0.4]
    board = pd.DataFrame({"model": ["a", "b"], "NDCG@10": [0.05, 0.07]})
    ax = plot_leaderboard(board, highlight="b")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]  # best at the top
    ax = plot_long_tail(np.array([1, 100, 10]))
    assert list(ax.lines[0].get_ydata()) == [100, 10, 1]
    fig = show_images(np.zeros((3, 28, 28), np.uint8), titles=["x", "y", "z"], n_cols=2)
    assert len(fig.axes) == 4


def test_plots_reject_bad_input():
    with pytest.raises(ValueError, match="empty"):
        plot_learning_curves({})
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_leaderboard(pd.DataFrame({"model": ["a"]}), metric="NDCG@10")
    with pytest.raises(ValueError, match="N × H × W"):
        show_images(np.zeros((28, 28)))


def test_course_map_marks_missing_lessons_as_coming(tmp_path):
    (tmp_path / "00_welcome.ipynb").write_text("{}")
    course = course_map(tmp_path)
    assert len(course) == len(LESSONS) == 26
    assert course.set_index("notebook").loc["00_welcome", "status"] == "ready"
    assert (course.status == "coming").sum() == 25


def test_runner_executes_lessons_and_writes_reports(tmp_path, monkeypatch):
    """A real papermill run of two tiny lessons: one that logs a result, one that fails."""
    lessons = tmp_path / "notebooks"
    lessons.mkdir()
    logging_cell = new_code_cell(
        "from course_utils.results import log_result\n"
        "log_result('Toy', {'NDCG@10': 0.5, 'HR@10': 0.75}, dataset='d', protocol='p', lesson='90_toy',"
        " train_seconds=1.0, params=3)")
    parameters = new_code_cell("FAST = False")
    parameters.metadata["tags"] = ["parameters"]
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(new_notebook(cells=[parameters, logging_cell], metadata=kernel), lessons / "90_toy.ipynb")
    nbformat.write(new_notebook(cells=[parameters, new_code_cell("raise RuntimeError('broken lesson')")],
                                metadata=kernel), lessons / "91_broken.ipynb")
    # The runner sets these for its kernels; monkeypatch restores them for the other tests.
    monkeypatch.setenv("COURSE_FAST", "0")
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "unused.jsonl"))
    code = course_runner.main(["--fast", "--notebooks", str(lessons), "--build", str(tmp_path / "build")])
    assert code == 1  # one lesson failed, and the run says so
    timings = (tmp_path / "build" / "timings.md").read_text()
    assert "| 90_toy | FAST |" in timings and "| ok |" in timings and "FAILED" in timings
    results = (tmp_path / "build" / "results.md").read_text()
    assert "## FAST mode" in results and "## full mode" not in results
    assert "| Toy | d | p | 0.5000 | 0.7500 |" in results
    assert (tmp_path / "build" / "notebooks" / "90_toy.ipynb").exists()
    # A later build of one lesson in the other mode keeps the earlier rows beside its own.
    course_runner.main(["--notebooks", str(lessons), "--build", str(tmp_path / "build"), "--only", "90"])
    timings = (tmp_path / "build" / "timings.md").read_text()
    assert "| 90_toy | FAST |" in timings and "| 90_toy | full |" in timings and "| 91_broken | FAST |" in timings
    results = (tmp_path / "build" / "results.md").read_text()
    assert results.index("## full mode") < results.index("## FAST mode")


def test_theme_keeps_grid_off_images_and_learning_curves_rescale_losses():
    set_theme()
    set_theme()   # idempotent: the image hook is installed once
    _, ax = matplotlib.pyplot.subplots()
    ax.imshow(np.eye(3))
    assert not any(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())
    small = FitResult(pd.DataFrame({"epoch": [1, 2], "loss": [0.02, 0.01]}), 2, None, 1.0)
    large = FitResult(pd.DataFrame({"epoch": [1, 2], "loss": [600.0, 450.0]}), 2, None, 1.0)
    axes = plot_learning_curves({"mse": small, "nll": large})
    assert [list(line.get_ydata()) for line in axes[0].lines] == [[1.0, 0.5], [1.0, 0.75]]
    assert "epoch-1" in axes[0].get_ylabel()
    axes = plot_learning_curves({"mse": small, "nll": large}, loss_scale="shared")
    assert list(axes[0].lines[1].get_ydata()) == [600.0, 450.0]
    with pytest.raises(ValueError, match="loss_scale"):
        plot_learning_curves({"mse": small}, loss_scale="log")


def test_annotate_points_keeps_labels_apart():
    from course_utils.plotting import annotate_points

    fig, ax = matplotlib.pyplot.subplots()
    ax.plot([0, 1], [0, 1])
    texts = annotate_points(ax, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], ["τ=0", "τ=0.5", "τ=1"])
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert all(not a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    with pytest.raises(ValueError, match="one entry per point"):
        annotate_points(ax, [0], [0, 1], ["a"])


def test_runner_keeps_benchmark_sections_that_lessons_wrote(tmp_path):
    """Lesson 09 writes its LLM-ranker benchmark into timings.md between markers; a rebuild keeps it."""
    timings = tmp_path / "timings.md"
    assert course_runner.benchmark_sections(timings) == ""
    section = "<!-- begin section: llm-ranker -->\n## LLM ranker\n\n| a | b |\n<!-- end section: llm-ranker -->\n"
    timings.write_text("# Lesson timings\n\n| old table |\n\n" + section + "<!-- begin section: broken -->\nno end\n")
    kept = course_runner.benchmark_sections(timings)
    assert kept == "\n" + section and "old table" not in kept and "no end" not in kept
