import math

import torch

from course_utils.exercises import lesson14
from course_utils.multimodal.clip import contrastive_loss


def test_exercise_1_chance_recall():
    assert lesson14.check_exercise_1(None, 600).message.startswith("No answer yet")
    assert lesson14.check_exercise_1(10 / 600, 600)
    wrong = lesson14.check_exercise_1(1 / 600, 600)
    assert not wrong and "top 10" in wrong.message


def test_exercise_2_loss_by_hand_agrees_with_the_package():
    # logits = scale · I Tᵀ with unit features: I = identity, T rows as below, scale chosen to give [[2, 0], [1, 1]].
    logits = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    rows = torch.nn.functional.cross_entropy(logits, torch.arange(2))
    cols = torch.nn.functional.cross_entropy(logits.T, torch.arange(2))
    assert math.isclose(lesson14.two_by_two_loss(), ((rows + cols) / 2).item(), rel_tol=1e-6)
    assert math.isclose(lesson14.two_by_two_loss(),
                        contrastive_loss(torch.eye(2), logits.T.contiguous(), 1.0).item(), rel_tol=1e-6)
    assert lesson14.check_exercise_2(lesson14.two_by_two_loss())
    assert not lesson14.check_exercise_2(rows.item())  # one direction only is not the symmetric loss
    assert not lesson14.check_exercise_2(None)


def test_exercise_3_trainable_text_weights():
    assert lesson14.check_exercise_3(384 * 64, embed_dim=64)
    wrong = lesson14.check_exercise_3(384 * 64 + 64, embed_dim=64)
    assert not wrong and "without a bias" in wrong.message
    assert lesson14.check_exercise_3(None, embed_dim=64).message.startswith("No answer yet")
