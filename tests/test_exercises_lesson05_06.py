import numpy as np
import scipy.sparse as sp

from course_utils.exercises import lesson05, lesson06
from course_utils.models.diffusion import Denoiser, denoiser_size, history_survival, noise_schedule
from course_utils.training import count_parameters


def test_lesson05_checkers():
    assert lesson05.check_exercise_1(None).message.startswith("No answer yet")
    linear = float(np.prod(1 - noise_schedule(5, 1.0, 5e-4, 5e-3)))
    assert lesson05.check_exercise_1([linear, 0.995])
    wrong = lesson05.check_exercise_1([0.5, 0.995])
    assert not wrong and "product" in wrong.message
    X = sp.csr_matrix(np.random.default_rng(0).random((30, 50)) < 0.2, dtype=np.float32)
    shares = [history_survival(noise_schedule(5, 1.0, 5e-4, v), X, 42) for v in (5e-3, 2e-2, 5e-2)]
    assert lesson05.check_exercise_4(shares, X=X)
    assert not lesson05.check_exercise_4([0.1, 0.1, 0.1], X=X)
    assert count_parameters(Denoiser(37, 16, 10, 0.5)) == denoiser_size(37, 16, 10)
    assert lesson05.check_exercise_5(denoiser_size(1_000_000))
    feedback = lesson05.check_exercise_5(600 * 1_000_000)
    assert not feedback and "three linear layers" in feedback.message


def test_lesson06_checkers():
    assert lesson06.check_exercise_2(None).message.startswith("No answer yet")
    assert lesson06.check_exercise_2("Yes")
    assert not lesson06.check_exercise_2("no")
    assert lesson06.check_exercise_5(sum(np.log10(1600 - np.arange(10))))
    assert not lesson06.check_exercise_5(32.0 * 2)
    assert not lesson06.check_exercise_5(None)
