"""One protocol for every model at test time: the validation interaction is part of what each model sees.

For every recommender in ``course_utils.models`` we fit a small instance on planted
data and check that its test-time scores change when the validation interactions
are removed from the history. A model whose test scores ignored them would be
judged on less information than EASE or SASRec (the asymmetry lesson 01 fixes).
"""
import numpy as np
import pytest

from course_utils.data.splits import leave_one_out_split
from course_utils.models.autoencoders import AutoRec, ListCVAE, MultDAE, MultVAE
from course_utils.models.baselines import BPRMF, EASE, ItemKNN, Popularity
from course_utils.models.diffusion import DiffRec
from course_utils.models.gans import IRGAN
from course_utils.models.gflownets import GFN4Rec
from course_utils.models.sequential import BERT4Rec, GRU4Rec, SASRec

FIT = {
    "Popularity": lambda s, X: Popularity().fit(X),
    "ItemKNN": lambda s, X: ItemKNN(n_neighbors=10).fit(X),
    "EASE": lambda s, X: EASE(l2=10.0).fit(X),
    "BPR-MF": lambda s, X: BPRMF(dim=8, n_epochs=2, batch_size=256).fit(X),
    "IRGAN": lambda s, X: IRGAN(dim=8, n_epochs=2, batch_size=256).fit(X),
    "IRGAN control": lambda s, X: IRGAN(dim=8, n_epochs=2, batch_size=256, negatives="uniform").fit(X),
    "AutoRec": lambda s, X: AutoRec(hidden_dim=16, n_epochs=2).fit(X),
    "Mult-DAE": lambda s, X: MultDAE(hidden_dims=(), latent_dim=16, n_epochs=2).fit(X),
    "Mult-VAE": lambda s, X: MultVAE(hidden_dims=(), latent_dim=16, n_epochs=2).fit(X),
    "ListCVAE": lambda s, X: ListCVAE(slate_size=3, embed_dim=8, hidden_dim=16, latent_dim=4, n_epochs=2).fit(
        X, s.history("valid").sequences),
    "DiffRec": lambda s, X: DiffRec(hidden_dim=32, n_epochs=2).fit(X),
    "GRU4Rec": lambda s, X: GRU4Rec(max_len=10, dim=16, n_epochs=2).fit(s, validate=False),
    "SASRec": lambda s, X: SASRec(max_len=10, dim=16, n_epochs=2).fit(s, validate=False),
    "BERT4Rec": lambda s, X: BERT4Rec(max_len=10, dim=16, n_epochs=2).fit(s, validate=False),
    "GFN4Rec": lambda s, X: GFN4Rec(EASE(l2=10.0).fit(X), np.eye(X.shape[1], 8), k=5, n_epochs=2).fit(
        X, s.history("valid")),
}


@pytest.fixture(scope="module")
def split(request):
    rng = np.random.default_rng(0)
    rows = []
    for user in range(60):
        half = np.arange(20) if user % 2 == 0 else np.arange(20, 40)
        rows += [(user, int(item), 5.0, 1000 + t) for t, item in enumerate(rng.choice(half, 12, replace=False))]
    import pandas as pd
    return leave_one_out_split(pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]))


@pytest.mark.parametrize("name", sorted(FIT))
def test_test_scores_depend_on_the_validation_interaction(name, split):
    model = FIT[name](split, split.train_matrix())
    users = np.arange(split.n_users)
    with_valid = np.asarray(model.score(users, split.history("test")), dtype=np.float64)
    without_valid = np.asarray(model.score(users, split.history("valid")), dtype=np.float64)
    changed = ~np.isclose(with_valid, without_valid, atol=1e-7).all(axis=1)
    assert changed.mean() > 0.5, f"{name}: test scores of {changed.sum()}/{len(users)} users use the validation item"


def test_mf_fold_in_leaves_validation_scores_untouched_and_is_cached(split):
    model = BPRMF(dim=8, n_epochs=2, batch_size=256).fit(split.train_matrix())
    users = np.arange(split.n_users)
    trained = (model.net_.user.weight @ model.net_.item.weight.T).detach().numpy()
    np.testing.assert_allclose(model.score(users, split.history("valid")), trained, rtol=1e-6)
    first = model.score(users, split.history("test"))
    np.testing.assert_array_equal(first, model.score(users, split.history("test")))
