"""The LLaVA-style connector: projector shapes, the assembled sequence, label masking, generation, bad inputs."""
import numpy as np
import pytest
import torch

from course_utils.multimodal import connector as C
from course_utils.multimodal.clip import images_to_tensor


@pytest.fixture(scope="module")
def llm():
    from course_utils.hub import load_llm

    model, tokenizer, _ = load_llm("smollm2-135m", device="cpu", verbose=False)
    return C.freeze(model), tokenizer


@pytest.fixture(scope="module")
def clip():
    from course_utils.multimodal.clip import FAST_CONFIG, build_lit_model

    return build_lit_model(FAST_CONFIG).eval()  # untrained weights: shapes and errors only


@pytest.mark.parametrize("kind, n_params", [("linear", 8 * 6 + 6), ("mlp", 8 * 6 + 6 + 6 * 6 + 6)])
def test_projector_shapes_and_sizes(kind, n_params):
    projector = C.make_projector(kind, 8, 6)
    assert projector(torch.randn(3, 5, 8)).shape == (3, 5, 6)  # one visual token per feature token
    assert C.n_trainable(projector) == n_params
    if kind == "mlp":
        assert isinstance(projector[1], torch.nn.GELU)


def test_projector_bad_kind():
    with pytest.raises(ValueError, match="unknown projector kind"):
        C.make_projector("qformer", 8, 6)


def test_visual_features_token_counts_and_bad_images(clip):
    images = np.random.default_rng(0).integers(0, 255, (3, 28, 28), dtype=np.uint8)
    for grid in (1, 2):
        features = C.visual_features(clip, images, grid=grid)
        assert features.shape == (3, 1 + grid ** 2, clip.visual.transformer.width)
    # grid = side: the pooled map is the patch tokens themselves; the CLS token projects to CLIP's embedding.
    side = clip.visual.grid_size[0]
    full = C.visual_features(clip, images, grid=side)
    clip.visual.output_tokens = True
    with torch.no_grad():
        pooled, tokens = clip.visual(images_to_tensor(clip, images))
    clip.visual.output_tokens = False
    assert torch.allclose(full[:, 1:], tokens, atol=1e-5)
    assert torch.allclose(full[:, 0] @ clip.visual.proj, pooled, atol=1e-5)
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28\)"):
        C.visual_features(clip, np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="finer than"):
        C.visual_features(clip, images, grid=side + 1)


def test_assembly_and_label_masking(llm):
    model, tokenizer = llm
    before, after = C.prompt_embeddings(model, tokenizer, "Photo: <image> Title:")
    targets = C.tokenize_captions(tokenizer, ["Dark plain coat", "Light bag"])
    visual = torch.randn(2, 3, model.config.hidden_size) * 0.1
    batch = C.assemble_inputs(visual, (before, after), targets, model.get_input_embeddings(),
                              tokenizer.eos_token_id, tokenizer.pad_token_id)
    prefix = len(before) + 3 + len(after)
    width = prefix + max(map(len, targets)) + 1
    assert batch["inputs_embeds"].shape == (2, width, model.config.hidden_size)
    assert torch.equal(batch["inputs_embeds"][:, len(before):len(before) + 3], visual)
    assert (batch["labels"][:, :prefix] == -100).all()  # no loss on prompt or image positions
    for row, target in enumerate(targets):
        n = len(target) + 1
        assert batch["labels"][row, prefix:prefix + n].tolist() == target + [tokenizer.eos_token_id]
        assert (batch["labels"][row, prefix + n:] == -100).all() and (batch["attention_mask"][row, prefix + n:] == 0).all()
    # The loss on caption positions only equals transformers' own loss with these labels.
    with torch.no_grad():
        assert torch.isclose(C.caption_loss(model, batch), model(**batch).loss, atol=1e-4)


def test_bad_inputs(llm):
    model, tokenizer = llm
    with pytest.raises(ValueError, match="caption list is empty"):
        C.tokenize_captions(tokenizer, [])
    with pytest.raises(ValueError, match="not one string"):
        C.tokenize_captions(tokenizer, "a coat")
    with pytest.raises(ValueError, match="placeholder"):
        C.prompt_embeddings(model, tokenizer, "Title:")
    before, after = C.prompt_embeddings(model, tokenizer, C.PROMPT)
    with pytest.raises(ValueError, match="pair one to one"):
        C.assemble_inputs(torch.zeros(2, 1, model.config.hidden_size), (before, after), [[5]],
                          model.get_input_embeddings(), 0, 0)
    with pytest.raises(ValueError, match="non-empty"):
        C.describe(model, tokenizer, C.make_projector("linear", 4, model.config.hidden_size), torch.zeros(0, 2, 4))


def test_generation_returns_text_for_a_tiny_batch(llm):
    model, tokenizer = llm
    torch.manual_seed(0)
    projector = C.make_projector("linear", 4, model.config.hidden_size)
    texts = C.describe(model, tokenizer, projector, torch.randn(2, 2, 4), max_new_tokens=4)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts) and any(t for t in texts)


def test_names_attribute():
    vocab = ["T-shirt", "shirt", "coat"]
    hits = C.names_attribute(["A dark T-shirt", "a shirt or a coat", "nothing"], ["T-shirt", "shirt", "coat"], vocab)
    assert hits.tolist() == [1.0, 0.0, 0.0]  # naming two categories is not naming the right one
    with pytest.raises(ValueError, match="one true value per text"):
        C.names_attribute(["x"], [], vocab)


def test_ridge_fit_recovers_a_planted_linear_map():
    g = torch.Generator().manual_seed(0)
    x, weight, bias = torch.randn(200, 5, generator=g), torch.randn(3, 5, generator=g), torch.randn(3, generator=g)
    w, b = C.ridge_fit(x, x @ weight.T + bias, l2=0.0)
    assert torch.allclose(w, weight, atol=1e-4) and torch.allclose(b, bias, atol=1e-4)
    shrunk, _ = C.ridge_fit(x, x @ weight.T + bias, l2=1e4)
    assert shrunk.norm() < 0.2 * weight.norm()  # a large penalty shrinks the weights toward zero
    with pytest.raises(ValueError, match="same N"):
        C.ridge_fit(x, x[:10])
    with pytest.raises(ValueError, match=">= 0"):
        C.ridge_fit(x, x, l2=-1.0)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_warm_start_sends_visual_tokens_to_their_targets(kind):
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(60) % 3
    features = torch.randn(3, 8, generator=g)[labels][:, None].repeat(1, 2, 1) + 0.01 * torch.randn(60, 2, 8, generator=g)
    targets = torch.randn(3, 16, generator=g)[labels]
    torch.manual_seed(0)
    projector = C.warm_start(C.make_projector(kind, 8, 16), features, targets, l2=1e-3)
    with torch.no_grad():
        out = projector(features)
    nearest = torch.cdist(out.reshape(-1, 16), targets[:3]).argmin(1).reshape(60, 2)
    assert (nearest == labels[:, None]).all()


def _naive_choice_loglik(model, tokenizer, projector, features, prefixes, candidates, prompt):
    """One forward pass per (product, candidate): the full sequence, unpadded, read at the candidate's position."""
    before, after = C.prompt_embeddings(model, tokenizer, prompt)
    embed, out = model.get_input_embeddings(), np.zeros((len(prefixes), len(candidates)))
    with torch.no_grad():
        for i, prefix in enumerate(prefixes):
            pre = tokenizer(" " + prefix.strip(), add_special_tokens=False)["input_ids"] if prefix.strip() else []
            for j, word in enumerate(candidates):
                ids = pre + tokenizer(" " + word, add_special_tokens=False)["input_ids"][:1]
                row = torch.cat([before, projector(features[i]), after, embed(torch.tensor(ids))])[None]
                logits = model(inputs_embeds=row).logits[0, -2].float()   # the position that predicts the word
                out[i, j] = torch.log_softmax(logits, -1)[ids[-1]].item()
    return out


def test_choice_loglik_equals_a_naive_per_choice_computation(llm):
    model, tokenizer = llm
    torch.manual_seed(0)
    projector = C.make_projector("linear", 4, model.config.hidden_size)
    C.match_scale(projector, torch.randn(8, 2, 4), model.get_input_embeddings().weight.std().item())
    features = torch.randn(3, 2, 4)
    # Prefixes of different lengths (one empty) put padding in the batch, which must change nothing.
    prefixes, candidates = ["Dark plain", "", "Light textured leather"], ["coat", "dress", "bag"]
    fast = C.choice_loglik(model, tokenizer, projector, features, prefixes, candidates, prompt="Photo: <image> Title:")
    assert fast.shape == (3, 3) and (fast < 0).all()
    naive = _naive_choice_loglik(model, tokenizer, projector, features, prefixes, candidates, "Photo: <image> Title:")
    assert np.allclose(fast, naive, atol=2e-3), (fast, naive)
    one_by_one = C.choice_loglik(model, tokenizer, projector, features, prefixes, candidates,
                                 prompt="Photo: <image> Title:", batch_size=1)
    assert np.allclose(fast, one_by_one, atol=2e-3)


def test_choice_loglik_ranks_the_obvious_word_first(llm):
    model, tokenizer = llm
    projector = C.make_projector("linear", 4, model.config.hidden_size)
    with torch.no_grad():  # visual tokens of zeros: the text alone decides
        projector.weight.zero_(), projector.bias.zero_()
    scores = C.choice_loglik(model, tokenizer, projector, torch.zeros(2, 1, 4),
                             ["The capital of France is", "Monday, Tuesday,"], ["Paris", "Wednesday", "banana"],
                             prompt="Facts: <image> Text:")
    assert scores.argmax(1).tolist() == [0, 1]


def test_choice_loglik_bad_inputs(llm):
    model, tokenizer = llm
    projector = C.make_projector("linear", 4, model.config.hidden_size)
    features = torch.zeros(2, 1, 4)
    with pytest.raises(ValueError, match="share a first token"):
        C.choice_loglik(model, tokenizer, projector, features, ["a", "b"], ["sandals", "sand"])
    with pytest.raises(ValueError, match="one prefix per image"):
        C.choice_loglik(model, tokenizer, projector, features, ["a"], ["coat", "bag"])
    with pytest.raises(ValueError, match="one prefix per image"):
        C.choice_loglik(model, tokenizer, projector, features, ["a", "b"], [])


def test_training_caption_puts_the_category_first_and_drops_the_brand():
    assert C.training_caption("ankle boots", "Dark plain ankle boots by Alder & Co") == "ankle boots. Dark plain ankle boots"
    with pytest.raises(ValueError, match="category word and a title"):
        C.training_caption("", "Dark plain coat by Miro")


def test_constrained_first_word_is_the_forced_choice(llm):
    model, tokenizer = llm
    torch.manual_seed(1)
    projector = C.make_projector("mlp", 4, model.config.hidden_size)
    features = torch.randn(5, 2, 4)
    words = ["coat", "bag", "T-shirt", "sandals", "ankle boots"]     # multi-token words are completed by the trie
    texts = C.describe(model, tokenizer, projector, features, max_new_tokens=6, first_words=words)
    firsts = [next((w for w in words if t.startswith(w + ".")), None) for t in texts]
    assert None not in firsts, texts                        # every caption opens with an allowed word and "."
    forced = C.choice_loglik(model, tokenizer, projector, features, [""] * 5, words).argmax(1)
    assert firsts == [words[i] for i in forced]             # greedy over the allowed first tokens = the forced choice
    free = C.describe(model, tokenizer, projector, features, max_new_tokens=6)
    assert free != texts                                    # an untrained projector does not write "coat." unasked
    with pytest.raises(ValueError, match="share a first token"):
        C.describe(model, tokenizer, projector, features, first_words=["sandals", "sand"])
    with pytest.raises(ValueError, match="non-empty"):
        C.first_word_tokens(tokenizer, [])


def test_describe_systems_equals_one_describe_per_system(llm):
    model, tokenizer = llm
    torch.manual_seed(2)
    a, b = C.make_projector("linear", 4, model.config.hidden_size), C.make_projector("mlp", 4, model.config.hidden_size)
    fa, fb = torch.randn(3, 2, 4), torch.randn(2, 2, 4)
    together = C.describe_systems(model, tokenizer, {"a": (a, fa), "b": (b, fb)}, max_new_tokens=4)
    assert together == {"a": C.describe(model, tokenizer, a, fa, max_new_tokens=4),
                        "b": C.describe(model, tokenizer, b, fb, max_new_tokens=4)}
    with pytest.raises(ValueError, match="no systems"):
        C.describe_systems(model, tokenizer, {})
    with pytest.raises(ValueError, match="same number of visual tokens"):
        C.describe_systems(model, tokenizer, {"a": (a, fa), "b": (b, torch.randn(2, 3, 4))})
