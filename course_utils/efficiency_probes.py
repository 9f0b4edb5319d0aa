"""More section-4b cost probes for lesson 20: TIGER and GPT4Rec (lesson 12), ListCVAE (lesson 02) and the
rule-based conversational recommender (lesson 13). (Lesson 12's TextInitSASRec is a full-ranking MovieLens model:
lesson 20 costs it with :func:`course_utils.efficiency.profile_recommender`, next to SASRec.)

Same contract as :class:`course_utils.efficiency.CostProbe` (read that first): each builder makes the model at
ITS lesson's configuration for this mode (FAST or full), gives ``stages = {stage: (run_steps, lesson steps)}``
where ``run_steps(n)`` runs n real optimisation steps with the lesson's own trainer on real batches, a
``query(i)`` that serves one unit alone and a ``batch()`` that serves ``batch_size`` units at once.
:func:`course_utils.efficiency.profile_probe` then times a few steps and multiplies by the lesson's step count;
the weights need not converge, since the cost of a step does not depend on how far training has gone.

The lessons hard-code their settings in their parameters cells, so every builder copies them into a per-mode
table in its docstring and code. Where a lesson's trainer has no "run n steps" switch, ``run_steps`` runs one
epoch over just enough data for n batches; the builder's docstring and ``note`` say so.
"""
from __future__ import annotations

import numpy as np

from course_utils.efficiency import CostProbe, _n_params


def _check_vectors(item_vectors, n_items: int, what: str = "item_vectors") -> np.ndarray:
    vectors = np.asarray(item_vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != n_items:
        raise ValueError(f"{what} must hold one row per item: the catalogue has {n_items} items, got "
                         f"{len(vectors) if vectors.ndim else 0} rows (shape {vectors.shape})")
    if not np.isfinite(vectors).all():
        raise ValueError(f"{what} contain NaN or inf")
    return vectors


def _users_with_targets(split, stage: str = "test") -> np.ndarray:
    return np.flatnonzero(split.targets(stage).getnnz(axis=1))


# --- lesson 12: TIGER ------------------------------------------------------------------------

def tiger_settings(fast: bool) -> dict:
    """Lesson 12's parameters cell for the RQ-VAE and TIGER, per mode (copied from the lesson)."""
    return {"RQ": dict(latent_dim=32, hidden=[128], n_levels=3, codebook_size=64, beta=0.25),
            "RQ_FIT": dict(n_steps=150 if fast else 600, warmup_steps=50 if fast else 150, lr=2e-3, batch_size=256),
            "TIGER": dict(d_model=32, n_heads=2, d_ff=64, n_layers=2) if fast
            else dict(d_model=64, n_heads=4, d_ff=128, n_layers=2),
            "TIGER_DATA": dict(n_recent=5, last_per_user=6) if fast else dict(n_recent=6, last_per_user=20),
            "TIGER_FIT": dict(n_epochs=2, batch_size=512, lr=1e-2) if fast
            else dict(n_epochs=3, batch_size=512, lr=5e-3),
            "NUM_BEAMS": 10 if fast else 20}


def tiger_probe(split, item_vectors, *, fast: bool, seed: int = 0, serve_batch: int = 64,
                name: str | None = None) -> CostProbe:
    """Lesson 12: TIGER, an RQ-VAE over the items' MiniLM vectors, then a T5 writing the next item's semantic ID.

    Lesson settings (FAST / full): RQ-VAE 384 → 128 → 32, 3 levels × 64 codes, β 0.25; 150 / 600 quantised steps
    after 50 / 150 warm-up steps, batch 256, lr 2e-3, k-means initialisation. T5 d_model 32 / 64, heads 2 / 4,
    d_ff 64 / 128, 2 + 2 layers; examples from each user's last 6 / 20 training positions reading 5 / 6 items;
    2 / 3 epochs of batch 512, lr 1e-2 / 5e-3. Beam 10 / 20.

    ``item_vectors``: (n_items, 384) MiniLM vectors of the items' documents, in item-id order. Stages:
    "RQ-VAE" (``sid.fit_rqvae``, quantised steps; the lesson's warm-up steps, which skip the quantiser, are
    counted as full steps, so this stage's estimate is an upper bound), "k-means init" (one call of
    ``RQVAE.kmeans_init``, the lesson runs it once) and "T5" (``sid.fit_tiger``, one epoch over n batches of
    512 examples). The T5 trains on the IDs of the k-means-initialised RQ-VAE, whose vocabulary may differ by a
    few collision tokens from the lesson's trained one. A query is one user's constrained beam search
    (``sid.TIGERRecommender.score``) returning NUM_BEAMS ranked items.
    """
    import torch

    from course_utils.llm import semantic_ids as sid

    vectors = _check_vectors(item_vectors, split.n_items)
    cfg = tiger_settings(fast)
    rq_fit, data, fit, beams = cfg["RQ_FIT"], cfg["TIGER_DATA"], cfg["TIGER_FIT"], cfg["NUM_BEAMS"]
    torch.manual_seed(seed)
    rqvae = sid.RQVAE(vectors.shape[1], **cfg["RQ"])
    rqvae.kmeans_init(vectors, seed)
    ids = sid.SemanticIDs(sid.resolve_collisions(rqvae.codes(vectors)))
    X, Y = sid.next_item_examples(split.history("valid").sequences, ids, **data)
    torch.manual_seed(seed)
    t5 = sid.make_tiger(ids.vocab_size, **cfg["TIGER"])
    tiger = sid.TIGERRecommender(t5, ids, data["n_recent"], beams, batch_size=serve_batch)
    history = split.history("test")
    users = np.random.default_rng(seed).permutation(_users_with_targets(split))

    def rq_steps(n):
        sid.fit_rqvae(rqvae, vectors, n_steps=n, init="random", warmup_steps=0, lr=rq_fit["lr"],
                      batch_size=rq_fit["batch_size"], seed=seed)

    def kmeans_steps(n):
        for _ in range(n):
            rqvae.kmeans_init(vectors, seed)

    def t5_steps(n):   # one epoch over n batches (examples reused when n batches need more than there are)
        rows = np.arange(n * fit["batch_size"]) % len(X)
        sid.fit_tiger(t5, X[rows], Y[rows], n_epochs=1, batch_size=fit["batch_size"], lr=fit["lr"], seed=seed)

    rq_params, _ = _n_params(rqvae)
    t5_params = tiger.n_params
    t5_total = fit["n_epochs"] * int(np.ceil(len(X) / fit["batch_size"]))
    return CostProbe(
        name or f"TIGER (RQ-VAE 3x64 + T5, beam {beams})", "12_llm_features", "ml-100k", "user",
        rq_params + t5_params, rq_params + t5_params,
        {"RQ-VAE": (rq_steps, rq_fit["n_steps"] + rq_fit["warmup_steps"]), "k-means init": (kmeans_steps, 1),
         "T5": (t5_steps, t5_total)},
        lambda i: tiger.score(users[i % len(users):i % len(users) + 1], history),
        lambda: tiger.score(users[:serve_batch], history), min(serve_batch, len(users)),
        f"params: T5 {t5_params:,} + RQ-VAE {rq_params:,}; serving runs the T5 only (the items' IDs are computed "
        f"once); the estimate covers both stages, lesson 12 logs the T5's training time only; "
        f"{rq_fit['warmup_steps']} RQ-VAE warm-up steps (no quantiser) counted as full steps; T5 vocabulary "
        f"{ids.vocab_size} from the k-means-initialised RQ-VAE; the two random-init RQ-VAE ablations not included")


# --- lesson 02: ListCVAE ---------------------------------------------------------------------

def listcvae_settings(fast: bool) -> dict:
    """Lesson 02's ListCVAE cell and the Mult-VAE it borrows from, per mode (copied from the lesson)."""
    anneal_epochs = 15 if fast else 60
    return {"slate": dict(slate_size=10, hidden_dim=256, latent_dim=32, beta=1.0, skip_prob=0.3, slates_per_user=4,
                          n_epochs=3 if fast else 10, patience=15 if fast else 20),
            "vae": dict(hidden_dims=(), latent_dim=200, dropout=0.5, lr=1e-2, anneal_epochs=anneal_epochs)}


def listcvae_parameters(net) -> tuple[int, int]:
    """(parameters a ListCVAE runs on, trainable ones). Run: its own MLPs, the borrowed Mult-VAE's encoder
    (``to_mu`` and ``to_logvar``) and the item vectors and biases copied from the Mult-VAE's output layer; the
    Mult-VAE's decoder is also held (inside the frozen encoder module) but never run, so it is not counted."""
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    vae = getattr(net.history, "vae_net", None)
    if vae is None:   # no pretrained Mult-VAE: every parameter is the ListCVAE's own
        return _n_params(net)
    frozen = sum(p.numel() for m in (vae.encoder, vae.to_mu, vae.to_logvar) for p in m.parameters())
    return trainable + frozen + net.items.weight.numel() + net.item_bias.numel(), trainable


def listcvae_probe(split, *, fast: bool, seed: int = 0, serve_batch: int = 256, name: str = "ListCVAE") -> CostProbe:
    """Lesson 02: ListCVAE (a conditional VAE that writes a 10-item slate), on a frozen Mult-VAE.

    Lesson settings: slate 10, hidden 256, latent 32, β 1, skip_prob 0.3, 4 simulated slates per user (users
    with at least 15 training items), batch 128, lr 3e-3, up to 3 / 10 epochs (FAST / full) with early stopping
    (patience 15 / 20). The Mult-VAE it borrows: no hidden layer, latent 200, dropout 0.5, lr 1e-2. Here the
    Mult-VAE is a stand-in fitted for 1 epoch only: its cost is lesson 02's Mult-VAE row, not this probe's.

    ``ListCVAE.fit`` has no "n steps" switch, so ``run_steps(n)`` runs the lesson's ``fit`` for one epoch without
    validation on the sequences of 32·n eligible users (4 slates each: n batches of 128); the others get empty
    sequences, so the popularity that draws the skipped items still comes from every user. A query is one
    generated slate for one user (``generate``: prior mean z, greedy decoding, seen items blocked).
    """
    from course_utils.models.autoencoders import ListCVAE, MultVAE

    cfg = listcvae_settings(fast)
    slate, vae_cfg = cfg["slate"], dict(cfg["vae"])
    anneal_epochs = vae_cfg.pop("anneal_epochs")
    X = split.train_matrix()
    sequences = split.history("valid").sequences
    vae = MultVAE(**vae_cfg, anneal_steps=anneal_epochs * int(np.ceil(X.shape[0] / 128)), n_epochs=1,
                  patience=1, seed=seed).fit(X)
    model = ListCVAE(**slate, pretrained=vae, seed=seed)
    eligible = np.flatnonzero([len(s) >= 5 + slate["slate_size"] for s in sequences])
    per_user, batch = slate["slates_per_user"], model.batch_size
    users_per_step = batch // per_user
    subsets = {}

    def run_steps(n):
        if n * users_per_step > len(eligible):
            raise ValueError(f"{n} steps need {n * users_per_step} users with {5 + slate['slate_size']} training "
                             f"items; the split has {len(eligible)}")
        if n not in subsets:
            keep = set(eligible[:n * users_per_step].tolist())
            subsets[n] = [s if u in keep else s[:0] for u, s in enumerate(sequences)]
        model.n_epochs = 1
        model.fit(X, subsets[n])

    run_steps(1)   # one real step, so that the network (and its parameter count) exists before profiling
    history = split.history("test")
    users = np.random.default_rng(seed).permutation(_users_with_targets(split))
    params, trainable = listcvae_parameters(model.net_)
    total = slate["n_epochs"] * int(np.ceil(len(eligible) * per_user / batch))
    return CostProbe(
        name, "02_autoencoders", "ml-100k", "slate", params, trainable, {"slate CVAE": (run_steps, total)},
        lambda i: model.generate(users[i % len(users):i % len(users) + 1], history),
        lambda: model.generate(users[:serve_batch], history), min(serve_batch, len(users)),
        f"the Mult-VAE is a 1-epoch stand-in, its cost not included (lesson 02's Mult-VAE row); up to "
        f"{slate['n_epochs']} epochs × {total // slate['n_epochs']} batches (early stopping may end sooner: an "
        "upper bound), per-epoch validation not included; params count the frozen Mult-VAE encoder and item "
        "vectors the slate decoder runs on")


# --- lesson 13: the conversational recommender -----------------------------------------------

def convrec_settings(fast: bool) -> dict:
    """Lesson 13's parameters, per mode (copied from the lesson)."""
    return dict(N_RULE=60 if fast else 300, N_LLM=3 if fast else 12, MAX_TURNS=4 if fast else 6, K=3, TARGET_POOL=60,
                knn=dict(n_neighbors=100, shrink=10.0))


def shopper_targets(shop, n: int, seed: int, pool: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Lesson 13's simulated shoppers: ``n`` random users, each with a hidden target drawn among their ``pool``
    best unbought items by the shop's true utility. Returns (users, targets)."""
    rng = np.random.default_rng(seed)
    users = rng.choice(shop.n_users, n, replace=False)
    utility = shop.true_utility(users=users)
    seen = shop.interactions.groupby("user")["item"].apply(list).to_dict()
    for row, user in enumerate(users):
        utility[row, seen.get(int(user), [])] = -np.inf
    best = np.argsort(-utility, axis=1)[:, :pool]
    return users, best[np.arange(n), rng.integers(0, pool, n)]


def _shop_tools(shop, item_vectors, encode, knn_options):
    import scipy.sparse as sp

    from course_utils.llm import conversational as cv
    from course_utils.models.baselines import ItemKNN

    log = shop.interactions
    X = sp.csr_matrix((np.ones(len(log)), (log["user"], log["item"])), shape=(shop.n_users, shop.n_items))
    knn = ItemKNN(**knn_options).fit(X)
    seen = log.groupby("user")["item"].apply(list).to_dict()
    reviews = log.groupby("item")["review"].apply(list).to_dict()
    return cv.ShopTools(shop.items, item_vectors, encode, (X @ knn.sim_).toarray(), seen, reviews), knn


def _dialogue_setup(shop, item_vectors, encode, fast: bool):
    """Lesson 13's settings and a ``build(n)`` that makes the tools n times (item-kNN, score rows); built once."""
    vectors = _check_vectors(item_vectors, shop.n_items)
    if not callable(encode):
        raise ValueError(f"encode must be a function from a list of queries to their vectors, got "
                         f"{type(encode).__name__}")
    cfg, built = convrec_settings(fast), {}

    def build(n):   # the lesson's set-up cell, minus loading the data and the encoder
        for _ in range(n):
            built["tools"], built["knn"] = _shop_tools(shop, vectors, encode, cfg["knn"])

    build(1)
    return cfg, build, built


def convrec_probe(shop, item_vectors, encode, *, fast: bool, seed: int = 0, serve_batch: int | None = None,
                  name: str = "ConvRec: full") -> CostProbe:
    """Lesson 13: the rule-based conversational recommender "ConvRec: full" (entropy-driven questions,
    critiquing, the ``recommend`` tool on item-kNN scores) against the lesson's rule-based shopper.

    Lesson settings (FAST / full): at most 4 / 6 system turns, 3 items per list, each shopper's hidden target
    drawn among their 60 best unbought items, 60 / 300 rule-policy dialogues; item-kNN with 100 neighbours and
    shrinkage 10. ``shop``: the fashion shop with 500 users; ``item_vectors``: (n_items, d) MiniLM vectors of the
    brief item documents; ``encode``: the query encoder of the ``search_catalogue`` tool (the rule policy never
    searches, so neither is run here; the lesson passes MiniLM).

    Nothing is trained: the stage is the one-off build (``ItemKNN`` on the purchases, every shopper's score row,
    the tools), total_steps 1. A query is one whole dialogue (``cv.run_dialogue``) with one rule-based shopper;
    a batch runs ``serve_batch`` dialogues in step (default: the lesson's 60 / 300).

    "ConvRec: LLM manager" is costed per turn instead (:func:`llm_manager_probe`): a whole dialogue with SmolLM2
    deciding every turn takes seconds, too slow to time ten of them.
    """
    from course_utils.llm import conversational as cv
    from course_utils.llm.simulators import RuleSimulator

    cfg, build, built = _dialogue_setup(shop, item_vectors, encode, fast)
    turns, k = cfg["MAX_TURNS"], cfg["K"]
    users, targets = shopper_targets(shop, cfg["N_RULE"], seed, cfg["TARGET_POOL"])
    manager = lambda: cv.DialogueManager(built["tools"], cv.RulePolicy(), k=k)
    one = lambda i: slice(i % len(users), i % len(users) + 1)
    b = min(serve_batch or cfg["N_RULE"], len(users))
    params = built["knn"].n_params
    return CostProbe(
        name, "13_conversational", "fashion-shop", "dialogue", params, params,
        {"build (item-kNN, score rows, tools)": (build, 1)},
        lambda i: cv.run_dialogue(manager(), RuleSimulator(shop.items, users[one(i)], targets[one(i)]), turns),
        lambda: cv.run_dialogues(manager(), RuleSimulator(shop.items, users[:b], targets[:b]), turns), b,
        f"nothing is trained: the stage is the one-off build, 1 step; params = the item-kNN's stored similarities; "
        f"rule policy and rule-based shopper, up to {turns} turns; numpy only, so torch's FLOP and memory counters "
        "see nothing (NaN / 0); the items' MiniLM vectors are an input, and unused: the rule policy never searches",
        trains=False)


# --- lesson 12: GPT4Rec ----------------------------------------------------------------------

def gpt4rec_probe(split, items, llm, tokenizer, *, fast: bool, seed: int = 0, serve_batch: int = 2,
                  name: str = "GPT4Rec query + BM25") -> CostProbe:
    """Lesson 12: GPT4Rec, SmolLM2 writes a search query from a user's recent titles and BM25 retrieves.

    Lesson settings (FAST / full): each user's last 4 / 5 test-history titles with their genres, one greedy query
    of at most 16 new tokens (``tf.generate_queries``), an empty answer falling back to the titles themselves;
    BM25 (``tf.BM25Retriever``) over the "Title (year). Genres: ..." documents; 12 / 100 users, all in one
    batched ``generate``. ``items``: MovieLens' item table; ``llm``, ``tokenizer``: from
    ``hub.load_llm("smollm2-135m")``.

    Nothing is trained: the stage is building the BM25 index, total_steps 1. A query is one user: the query
    written (a ``generate`` call of its own) and the whole catalogue scored by BM25. A batch writes
    ``serve_batch`` users' queries in one ``generate`` (the lesson batches its 12 / 100 users the same way; a
    small batch keeps the probe within lesson 20's budget, at about 1.7 s per query on two CPU cores). FLOPs and
    memory are counted on one forward pass over a user's prompt and 16 answer tokens, the matrix products that
    cached greedy decoding spreads over its 16 steps (the FLOP counter would slow a whole ``generate`` down).
    """
    import torch

    from course_utils.llm import prompting
    from course_utils.llm import text_features as tf
    from course_utils.llm.documents import movielens_documents

    if len(items) != split.n_items:
        raise ValueError(f"items must be the catalogue's table: the split has {split.n_items} items, got "
                         f"{len(items)} rows")
    n_recent = 4 if fast else 5
    documents = movielens_documents(items)
    titles = prompting.movie_titles(items)
    history = split.history("test")
    users = np.random.default_rng(seed).permutation(_users_with_targets(split))
    users = users[[len(history.sequences[u]) > 0 for u in users]]
    recent = lambda u: [f"{titles[i]} ({', '.join(items.genres[i])})" for i in history.sequences[u][-n_recent:]]
    built = {}

    def build(n):
        for _ in range(n):
            built["bm25"] = tf.BM25Retriever(documents)

    def serve(rows):
        histories = [recent(u) for u in rows]
        queries = tf.generate_queries(llm, tokenizer, histories, max_new_tokens=16)
        texts = [q if q.strip() else "; ".join(h) for q, h in zip(queries, histories)]
        return built["bm25"].scores(texts)

    @torch.no_grad()
    def forward_once(i):
        prompt = prompting.render_chat(tokenizer, tf.query_messages(recent(users[i % len(users)])))
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(llm.device)
        ids = torch.cat([ids, ids.new_full((1, 16), tokenizer.eos_token_id)], dim=1)
        return llm(input_ids=ids, logits_to_keep=16)

    build(1)
    params = sum(p.numel() for p in llm.parameters())
    return CostProbe(
        name, "12_llm_features", "ml-100k", "user", params, 0, {"BM25 index": (build, 1)},
        lambda i: serve(users[i % len(users):i % len(users) + 1]), lambda: serve(users[:serve_batch]),
        min(serve_batch, len(users)),
        f"nothing is trained: the stage is building the BM25 index, 1 step; params = the frozen SmolLM2; up to 16 "
        f"greedy new tokens per query from the last {n_recent} titles; a batch of {serve_batch} users in one "
        f"generate (the lesson writes its {12 if fast else 100} users' queries in one); FLOPs and memory of one "
        "pass over the prompt and 16 answer tokens (what cached decoding spreads over its steps)",
        measure=forward_once, trains=False)


def llm_manager_probe(shop, item_vectors, encode, llm, tokenizer, *, fast: bool, seed: int = 0, serve_batch: int = 4,
                      name: str = "ConvRec: LLM manager") -> CostProbe:
    """Lesson 13: "ConvRec: LLM manager", SmolLM2 choosing each system turn's tool call (constrained decoding,
    at most 24 new tokens, the rule policy as fallback) over the same tools as "ConvRec: full".

    A query is one **manager turn**: the first turn of a dialogue (the shopper's opening, one batched
    ``generate``, the tool run). A whole dialogue is up to 4 / 6 such turns (FAST / full) plus the simulated
    shopper's replies, so its bill is about turns × this row, on top of :func:`convrec_probe`'s per-dialogue cost
    of the rules and tools. Nothing is trained: the stage is the one-off build, total_steps 1. The system
    message's KV cache is computed once (as in the lesson) by an untimed first call. ``llm``, ``tokenizer``:
    from ``hub.load_llm("smollm2-135m")``; ``item_vectors``, ``encode``: as for :func:`convrec_probe`.
    """
    from course_utils.llm import conversational as cv
    from course_utils.llm.simulators import RuleSimulator
    from course_utils.llm.tool_calling import LLMPolicy

    if isinstance(serve_batch, bool) or not isinstance(serve_batch, int) or serve_batch < 1:
        raise ValueError(f"serve_batch must be a positive integer, got {serve_batch!r}")
    cfg, build, built = _dialogue_setup(shop, item_vectors, encode, fast)
    users, targets = shopper_targets(shop, max(cfg["N_LLM"], serve_batch), seed, cfg["TARGET_POOL"])
    openings = RuleSimulator(shop.items, users, targets).openings()
    manager = cv.DialogueManager(built["tools"], LLMPolicy(llm, tokenizer, shop.n_items, constrained=True), k=cfg["K"])
    first_turns = lambda rows: manager.respond([manager.new_state(users[r]) for r in rows], [openings[r] for r in rows])
    first_turns([0])   # computes the system message's cache once, as the lesson's first call does
    llm_params = sum(p.numel() for p in llm.parameters())
    return CostProbe(
        name, "13_conversational", "fashion-shop", "manager turn", llm_params + built["knn"].n_params, 0,
        {"build (item-kNN, score rows, tools)": (build, 1)},
        lambda i: first_turns([i % len(users)]), lambda: first_turns(list(range(serve_batch))), serve_batch,
        f"nothing is trained; one query = one system turn (SmolLM2's constrained tool call, then the tool); a dialogue "
        f"has up to {cfg['MAX_TURNS']} turns; params = SmolLM2 + the item-kNN's stored similarities; the shared system "
        "message's cache computed once before timing", trains=False)
