"""Lesson 17's conditional image diffusion: schedule, guidance, inpainting, shapes, judges and bad inputs."""
import numpy as np
import pytest
import torch

from course_utils.data.fashion_shop import make_fashion_shop
from course_utils.multimodal import image_diffusion as D


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return D.ConditionalUNet(image_size=8, channels=(8, 16)).eval()


def test_ddpm_alphas_cumprod_equal_the_closed_form_of_the_linear_schedule():
    for steps, start, end in ((1000, 1e-4, 0.02), (50, 1e-3, 0.05)):
        library = D.make_scheduler(steps, start, end).alphas_cumprod.double().numpy()
        assert np.allclose(library, D.linear_alphas_cumprod(steps, start, end), rtol=1e-5, atol=1e-7)
    by_hand = (1 - 1e-4) * (1 - (1e-4 + (0.02 - 1e-4) / 999))  # ᾱ after two steps
    assert np.isclose(D.linear_alphas_cumprod()[1], by_hand)


def test_guided_noise_mixes_unconditional_and_conditional_predictions():
    uncond, cond = torch.tensor([0.2, -1.0]), torch.tensor([0.5, 1.0])
    assert torch.allclose(D.guided_noise(uncond, cond, 0.0), uncond)
    assert torch.allclose(D.guided_noise(uncond, cond, 1.0), cond)
    assert torch.allclose(D.guided_noise(uncond, cond, 3.0), torch.tensor([1.1, 5.0]))  # 0.2 + 3·0.3, -1 + 3·2


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), "2", True])
def test_a_negative_or_non_numeric_guidance_scale_is_refused(bad, tiny_model):
    with pytest.raises(ValueError, match="guidance scale"):
        D.guided_noise(torch.zeros(2), torch.zeros(2), bad)
    with pytest.raises(ValueError, match="guidance scale"):
        D.generate(tiny_model, torch.tensor([0]), guidance=bad, n_steps=1)


def test_shapes_and_conditions_change_the_prediction(tiny_model):
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([10, 500, 999])
    none = torch.full((3,), D.NONE)
    eps = tiny_model(x, t, torch.tensor([0, 5, 9]), torch.tensor([0, D.NONE, 2]))
    assert eps.shape == (3, 1, 8, 8)
    with torch.no_grad():  # a fresh embedding row per label: conditions must reach the output
        tiny_model.category_embedding.weight.normal_()
        assert not torch.allclose(tiny_model(x, t, torch.tensor([0, 5, 9]), none), tiny_model(x, t, none, none))
    samples = D.generate(tiny_model, torch.tensor([1, 2]), torch.tensor([0, D.NONE]), guidance=2.0, n_steps=3)
    assert samples.shape == (2, 1, 8, 8) and torch.isfinite(samples).all()
    pixels = D.to_pixels(samples)
    assert pixels.shape == (2, 28, 28) and pixels.dtype == np.uint8


def test_generation_is_reproducible_from_its_seed_and_guidance_one_is_plain_conditional(tiny_model):
    first = D.generate(tiny_model, torch.tensor([3, 4]), guidance=1.0, n_steps=2, seed=5)
    again = D.generate(tiny_model, torch.tensor([3, 4]), guidance=1.0, n_steps=2, seed=5)
    assert torch.equal(first, again)
    assert not torch.equal(first, D.generate(tiny_model, torch.tensor([3, 4]), guidance=1.0, n_steps=2, seed=6))


def test_inpainting_keeps_the_known_region_exactly_and_changes_the_rest(tiny_model):
    known = torch.rand(4, 1, 8, 8) * 2 - 1
    keep = torch.zeros(1, 1, 8, 8)
    keep[..., :4, :] = 1  # keep the top half, regenerate the bottom
    edited = D.generate(tiny_model, torch.tensor([3, 3, 3, 3]), guidance=2.0, n_steps=4, known=known, keep=keep)
    assert torch.equal(edited[..., :4, :], known[..., :4, :])
    assert not torch.allclose(edited[..., 4:, :], known[..., 4:, :])
    with pytest.raises(ValueError, match="both known"):
        D.generate(tiny_model, torch.tensor([3]), known=known[:1])
    with pytest.raises(ValueError, match="known must have shape"):
        D.generate(tiny_model, torch.tensor([3]), known=known[:1, :, :4], keep=keep)


def test_pixel_round_trip_at_full_size_is_exact_and_resizing_keeps_the_range():
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    x = D.to_model_space(pixels, 28)
    assert x.shape == (5, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(D.to_pixels(x), pixels)
    small = D.to_model_space(pixels, 16)
    assert small.shape == (5, 1, 16, 16) and small.min() >= -1 and small.max() <= 1
    flat = D.to_model_space(np.full((1, 28, 28), 51, np.uint8), 16)  # area resizing keeps a flat image flat
    assert torch.allclose(flat, torch.full_like(flat, 51 / 127.5 - 1))


@pytest.mark.parametrize("images", [np.zeros((2, 32, 32), np.uint8), np.zeros((2, 28, 28), np.float32),
                                    np.zeros((28, 28), np.uint8)])
def test_wrong_image_sizes_and_types_are_refused(images):
    with pytest.raises(ValueError, match="images must be uint8 of shape"):
        D.to_model_space(images)


def test_bad_sizes_labels_and_model_inputs_are_refused(tiny_model):
    with pytest.raises(ValueError, match="image_size"):
        D.ConditionalUNet(image_size=30)
    with pytest.raises(ValueError, match="image_size"):
        D.to_model_space(np.zeros((1, 28, 28), np.uint8), 32)
    with pytest.raises(ValueError, match="expected images of shape"):
        tiny_model(torch.randn(2, 1, 16, 16), torch.tensor([1, 2]), torch.tensor([0, 0]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="category must be"):
        D.generate(tiny_model, torch.tensor([10]), n_steps=1)
    with pytest.raises(ValueError, match="tone must be"):
        D.generate(tiny_model, torch.tensor([1]), torch.tensor([3]), n_steps=1)
    with pytest.raises(ValueError, match="differ in length"):
        D.train_diffusion(tiny_model, torch.zeros(3, 1, 8, 8), torch.zeros(2, dtype=torch.long),
                          torch.zeros(3, dtype=torch.long), n_steps=1)
    with pytest.raises(ValueError, match="p_uncond"):
        D.drop_conditions(torch.zeros(3, dtype=torch.long), 1.0, torch.Generator())


def test_condition_dropout_rate_and_training_lowers_the_loss():
    labels = torch.arange(10).repeat(1000)
    dropped = D.drop_conditions(labels, 0.2, torch.Generator().manual_seed(0))
    assert abs((dropped == D.NONE).float().mean().item() - 0.2) < 0.02
    assert torch.equal(dropped[dropped != D.NONE], labels[dropped != D.NONE])
    torch.manual_seed(0)
    model = D.ConditionalUNet(image_size=8, channels=(8, 16))
    images = torch.zeros(32, 1, 8, 8)
    images[:, :, 2:6, 2:6] = 1.0  # one simple product shape
    images = images * 2 - 1
    info = D.train_diffusion(model, images, torch.zeros(32, dtype=torch.long), torch.zeros(32, dtype=torch.long),
                             n_steps=40, batch_size=8, lr=5e-3)
    assert np.mean(info["losses"][-10:]) < 0.6 * np.mean(info["losses"][:5])


def test_frechet_distance_on_hand_computed_cases():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    assert D.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([2.0, 0.0, 0.0])  # same covariance, mean moved by 2: distance 4
    assert D.frechet_distance(a, shifted) == pytest.approx(4.0, abs=1e-6)
    one_d = D.frechet_distance(np.array([[-1.0], [1.0]]), np.array([[0.0], [4.0]]))  # var 2 and 8, means 0 and 2
    assert one_d == pytest.approx(4 + 2 + 8 - 2 * 4.0)
    with pytest.raises(ValueError, match="feature arrays"):
        D.frechet_distance(a[:, :2], a)


def test_classifier_shapes_and_learning_on_separable_images():
    torch.manual_seed(0)
    model = D.ProductClassifier(image_size=8, width=8)
    images = -torch.ones(40, 1, 8, 8)
    labels = torch.arange(40) % 2
    images[labels == 1, :, :4] = 1.0  # class 1 is bright on top
    D.train_classifier(model, images, labels, n_epochs=15, batch_size=8, lr=1e-2)
    predicted, features = D.classify(model, images)
    assert predicted.shape == (40,) and features.shape == (40, 64)
    assert (predicted == labels.numpy()).mean() == 1.0
    with pytest.raises(ValueError, match="category label"):
        D.train_classifier(model, images, torch.full((40,), D.NONE))


def test_shop_features_reproduce_the_shops_own_item_features():
    shop = make_fashion_shop(n_users=5)
    rows = np.arange(0, shop.n_items, 7)
    categories = shop.item_features[rows, :10].argmax(1)
    assert np.array_equal(D.shop_features(shop.images[rows], categories), shop.item_features[rows, :15])
    with pytest.raises(ValueError, match="pixels must be uint8"):
        D.shop_features(shop.images[rows, :16, :16], categories)
    with pytest.raises(ValueError, match="categories must be"):
        D.shop_features(shop.images[rows], categories + 10)
    assert np.array_equal(D.clear_background(np.array([[0, 5, 11, 12, 200]], np.uint8)), [[0, 0, 0, 12, 200]])


def test_preferred_conditions_pick_the_best_scoring_cell_and_derangements_move_everyone():
    categories, tones = np.array([0, 0, 3, 3, 9]), np.array([0, 2, 1, 1, 2])
    scores = np.array([[5.0, 0.0, 0.0, 0.0, 0.0],    # item 0: (0, light)
                       [0.0, 0.0, 2.0, 1.0, 0.0],    # cell (3, mid) averages 1.5
                       [0.0, 0.0, 1.0, 1.0, 1.2]])   # (9, dark) 1.2 beats (3, mid) 1.0
    category, tone = D.preferred_conditions(scores, categories, tones)
    assert category.tolist() == [0, 3, 9] and tone.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="item_scores"):
        D.preferred_conditions(scores[:, :4], categories, tones)
    other = D.derangement(50, seed=3)
    assert sorted(other.tolist()) == list(range(50)) and (other != np.arange(50)).all()
    with pytest.raises(ValueError, match="at least 2"):
        D.derangement(1)
    spread = D.within_group_spread(np.array([[0.0], [2.0], [5.0], [5.0], [9.0]]), [0, 0, 1, 1, 2])
    assert spread == pytest.approx((2.0 + 0.0) / 2)  # the one-row group 2 is skipped
    assert np.allclose(D.nearest_distance(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0], [1.0, 0.0]])), [1.0])


def test_the_online_pipeline_refuses_bad_inputs_before_loading_anything():
    with pytest.raises(ValueError, match="guidance scale"):
        D.stable_diffusion_images("any/model", ["a red coat"], guidance=-1.0)
    with pytest.raises(ValueError, match="prompts"):
        D.stable_diffusion_images("any/model", [])


def test_the_velocity_target_is_the_closed_form_and_epsilon_is_the_noise():
    x0, noise, t = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8), torch.tensor([0, 400, 999])
    v_schedule = D.make_scheduler()
    assert v_schedule.config.prediction_type == "v_prediction"
    abar = torch.as_tensor(D.linear_alphas_cumprod(), dtype=torch.float32)[t][:, None, None, None]
    by_hand = abar.sqrt() * noise - (1 - abar).sqrt() * x0  # v = √ᾱ ε − √(1−ᾱ) x_0
    assert torch.allclose(D.diffusion_target(v_schedule, x0, noise, t), by_hand, atol=1e-5)
    assert torch.equal(D.diffusion_target(D.make_scheduler(prediction_type="epsilon"), x0, noise, t), noise)
    with pytest.raises(ValueError, match="prediction_type"):
        D.make_scheduler(prediction_type="x0")


def test_an_epsilon_model_also_trains_and_samples(tiny_model):
    scheduler = D.make_scheduler(prediction_type="epsilon")
    samples = D.generate(tiny_model, torch.tensor([1, 2]), guidance=2.0, n_steps=3, scheduler=scheduler)
    assert samples.shape == (2, 1, 8, 8) and torch.isfinite(samples).all()


def test_the_image_grid_is_one_axes_and_refuses_mismatched_labels():
    import matplotlib.pyplot as plt

    pixels = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    fig = D.show_image_grid(pixels, [str(i) for i in range(7)], n_cols=4, row_labels=["a", "b"])
    assert len(fig.axes) == 1 and len(fig.axes[0].texts) == 7
    assert fig.axes[0].images[0].get_array().shape == (2 * 28 + 28 // 3, 4 * 28 + 3 * 2)  # two rows, gaps between
    plt.close(fig)
    with pytest.raises(ValueError, match="titles"):
        D.show_image_grid(pixels, ["only one"])
    with pytest.raises(ValueError, match="row labels"):
        D.show_image_grid(pixels, n_cols=4, row_labels=["a"])
    with pytest.raises(ValueError, match="N × H × W"):
        D.show_image_grid(pixels[0])
