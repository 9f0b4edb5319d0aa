"""Auto-encoders for collaborative filtering (survey Section 2.1, lesson 02).

A user is a bag of items: the row x_u of the users × items 0/1 matrix. An
auto-encoder squeezes that row through a bottleneck and reconstructs it; the
reconstruction scores items the user has not seen yet.

* ``AutoRec`` (Sedhain et al., 2015): one hidden layer, squared error. The
  user-based variant reconstructs user rows, the item-based one item columns.
* ``MultDAE`` and ``MultVAE`` (Liang et al., 2018): input dropout, a multinomial
  likelihood over items, and for the VAE a Gaussian latent code whose KL term is
  annealed up to a cap β. ``MultDAE(loss_on="masked")`` is the BERT-style
  view: mask some of the user's items and predict only those.
* ``ListCVAE`` (Jiang et al., 2019): a conditional VAE that generates a whole
  slate of k items for a user, conditioned on the history and on the response
  we wish for.

Every model has ``fit(X, validate=None)`` on a users × items CSR matrix and
``score(users, history) -> len(users) × n_items``.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from course_utils.config import get_device
from course_utils.data.splits import History, check_interaction_matrix
from course_utils.training import FitResult, check_finite, count_parameters, fit_loop


def _check_rate(name: str, value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return float(value)


def _check_positive(**values) -> None:
    check_finite(**values)  # NaN and inf pass `v > 0` or fail it with a confusing message
    bad = {k: v for k, v in values.items() if not v > 0}
    if bad:
        raise ValueError(f"these arguments must be positive: {bad}")


def _dense_rows(X: sp.csr_matrix, rows: np.ndarray, device) -> torch.Tensor:
    """The given rows of a sparse matrix as a dense float tensor on ``device`` (batch × n_cols)."""
    return torch.as_tensor(X[rows].toarray(), dtype=torch.float32, device=device)


def _mlp(dims: list[int], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """Linear layers with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for index, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if index < len(dims) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


# --- AutoRec -----------------------------------------------------------------

class AutoRecNet(nn.Module):
    """x -> sigmoid(W x + b) -> V h + c: AutoRec's single hidden layer, identity output."""

    def __init__(self, n_inputs: int, hidden_dim: int):
        super().__init__()
        self.encoder = nn.Linear(n_inputs, hidden_dim)
        self.decoder = nn.Linear(hidden_dim, n_inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.sigmoid(self.encoder(x)))


def weighted_squared_error(reconstruction: torch.Tensor, x: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Squared error summed over a row, observed (x = 1) entries weighted ``pos_weight``; mean over rows.

    With implicit data every cell is "observed" (unseen = 0), so unlike rating
    AutoRec we fit the zeros too, but give the rare ones more weight.
    """
    weights = 1.0 + (pos_weight - 1.0) * x
    return (weights * (reconstruction - x) ** 2).sum(dim=1).mean()


# --- Mult-DAE / Mult-VAE ---------------------------------------------------------

def keep_mask(x: torch.Tensor, dropout: float, training: bool) -> torch.Tensor:
    """A 0/1 mask (same shape as x) keeping each entry with probability 1 - dropout; all ones at inference."""
    if not training or dropout == 0:
        return torch.ones_like(x)
    return torch.bernoulli(torch.full_like(x, 1.0 - dropout))


class MultDAENet(nn.Module):
    """Normalise the bag, drop inputs, encode with tanh layers, decode to item logits."""

    def __init__(self, n_items: int, hidden_dims: tuple[int, ...], latent_dim: int, dropout: float):
        super().__init__()
        dims = [n_items, *hidden_dims, latent_dim]
        self.encoder = nn.Sequential(_mlp(dims), nn.Tanh())
        self.decoder = _mlp(dims[::-1])
        self.dropout = dropout

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """x: batch × n_items bag; keep: optional 0/1 mask of the items the encoder may see -> item logits."""
        kept = x if keep is None else x * keep
        return self.decoder(self.encoder(F.normalize(kept, dim=1)))


class MultVAENet(nn.Module):
    """Like ``MultDAENet`` but the encoder outputs a Gaussian q(z|x) = N(mu, diag(exp(logvar)))."""

    def __init__(self, n_items: int, hidden_dims: tuple[int, ...], latent_dim: int, dropout: float):
        super().__init__()
        dims = [n_items, *hidden_dims]
        self.encoder = nn.Sequential(_mlp(dims), nn.Tanh()) if hidden_dims else nn.Identity()
        self.to_mu = nn.Linear(dims[-1], latent_dim)
        self.to_logvar = nn.Linear(dims[-1], latent_dim)
        self.decoder = _mlp([latent_dim, *hidden_dims[::-1], n_items])
        self.dropout = dropout

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: batch × n_items bag -> (mu, logvar), each batch × latent_dim."""
        hidden = self.encoder(F.normalize(x, dim=1))
        return self.to_mu(hidden), self.to_logvar(hidden)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None):
        """Returns (item logits, mu, logvar); z is sampled in training and set to mu at inference."""
        mu, logvar = self.encode(x if keep is None else x * keep)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar


class PosteriorMean(nn.Module):
    """A trained Mult-VAE encoder as a plain module: bag (batch × n_items) -> mu (batch × latent_dim)."""

    def __init__(self, vae_net: MultVAENet):
        super().__init__()
        self.vae_net = vae_net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae_net.encode(x)[0]


def multinomial_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-Σ_i x_ui log softmax(logits_u)_i, averaged over users: the Mult-VAE reconstruction term.

    Users whose target row is empty (nothing masked, say) do not count in the average.
    """
    per_user = -(F.log_softmax(logits, dim=1) * x).sum(dim=1)
    return per_user.sum() / (x.sum(dim=1) > 0).sum().clamp(min=1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dimensions, averaged over users."""
    return 0.5 * (torch.exp(logvar) + mu ** 2 - 1.0 - logvar).sum(dim=1).mean()


def annealed_beta(step: int, anneal_steps: int, beta_cap: float) -> float:
    """β grows linearly from 0 by 1/anneal_steps per update and stops at ``beta_cap``."""
    return float(min(beta_cap, step / max(anneal_steps, 1)))


# --- the shared trainer --------------------------------------------------------------

class _UserAutoEncoder:
    """Shared mini-batch training over user rows; subclasses define the net and the loss."""

    name = "auto-encoder"

    def __init__(self, lr: float, weight_decay: float, batch_size: int, n_epochs: int, patience: int,
                 seed: int, device=None):
        _check_positive(lr=lr, batch_size=batch_size, n_epochs=n_epochs, patience=patience)
        check_finite(weight_decay=weight_decay)
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.lr, self.weight_decay, self.batch_size = lr, weight_decay, batch_size
        self.n_epochs, self.patience, self.seed = n_epochs, patience, seed
        self.device = torch.device(device) if device is not None else get_device()

    def _build(self, n_rows: int, n_cols: int) -> nn.Module:
        raise NotImplementedError

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _training_matrix(self, X: sp.csr_matrix) -> sp.csr_matrix:
        return X

    def fit(self, X, validate: Callable | None = None) -> "_UserAutoEncoder":
        """Train on X (users × items); ``validate(model) -> float`` enables early stopping."""
        X = check_interaction_matrix(X)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        rows_matrix = self._training_matrix(X)
        rows = np.flatnonzero(rows_matrix.getnnz(axis=1))  # users without training data teach nothing
        self.net_ = self._build(*rows_matrix.shape).to(self.device)
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.step_ = 0

        def train_epoch(epoch: int) -> float:
            self.net_.train()
            order = rng.permutation(rows)
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                loss = self._loss(_dense_rows(rows_matrix, batch, self.device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                self.step_ += 1
                total += loss.item() * len(batch)
            self._end_epoch(epoch)
            return total / len(order)

        self.fit_result_: FitResult = fit_loop(
            train_epoch, self.n_epochs, None if validate is None else (lambda: validate(self)),
            patience=self.patience, module=self.net_, desc=self.name)
        return self

    def _end_epoch(self, epoch: int) -> None:
        pass

    @torch.no_grad()
    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        self.net_.eval()
        return self._reconstruct(np.asarray(users), history).cpu().numpy()

    def _reconstruct(self, users: np.ndarray, history: History) -> torch.Tensor:
        out = self.net_(_dense_rows(history.matrix, users, self.device))
        return out[0] if isinstance(out, tuple) else out

    @property
    def n_params(self) -> int:
        return count_parameters(self.net_)


class AutoRec(_UserAutoEncoder):
    """AutoRec (Sedhain et al., 2015) for implicit feedback.

    ``kind="user"`` (U-AutoRec) reconstructs each user's row of n_items;
    ``kind="item"`` (I-AutoRec, the paper's better variant on ratings)
    reconstructs each item's column of n_users and reads user u's entry. The
    item-based model scores only the users it was trained on, but it sees their
    newest history at scoring time because the columns are rebuilt from it.
    """

    def __init__(self, kind: str = "user", hidden_dim: int = 200, pos_weight: float = 5.0, dropout: float = 0.0,
                 lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 128, n_epochs: int = 100,
                 patience: int = 5, seed: int = 0, device=None):
        super().__init__(lr, weight_decay, batch_size, n_epochs, patience, seed, device)
        if kind not in {"user", "item"}:
            raise ValueError(f"kind must be 'user' (U-AutoRec) or 'item' (I-AutoRec), got {kind!r}")
        _check_positive(hidden_dim=hidden_dim, pos_weight=pos_weight)
        self.kind, self.hidden_dim, self.pos_weight = kind, hidden_dim, pos_weight
        self.dropout = _check_rate("dropout", dropout)
        self.name = f"{'U' if kind == 'user' else 'I'}-AutoRec"

    def _training_matrix(self, X: sp.csr_matrix) -> sp.csr_matrix:
        return X if self.kind == "user" else X.T.tocsr()

    def _build(self, n_rows: int, n_cols: int) -> nn.Module:
        return AutoRecNet(n_cols, self.hidden_dim)

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        noisy = F.dropout(x, self.dropout, training=True) if self.dropout else x
        return weighted_squared_error(self.net_(noisy), x, self.pos_weight)

    def _reconstruct(self, users: np.ndarray, history: History) -> torch.Tensor:
        if self.kind == "user":
            return super()._reconstruct(users, history)
        columns = torch.as_tensor(history.matrix.T.toarray(), dtype=torch.float32, device=self.device)
        if columns.shape[1] != self.net_.encoder.in_features:
            raise ValueError(f"I-AutoRec was trained on {self.net_.encoder.in_features} users; "
                             f"the history has {columns.shape[1]}")
        return self.net_(columns)[:, torch.as_tensor(users, device=self.device)].T


class MultDAE(_UserAutoEncoder):
    """Mult-DAE (Liang et al., 2018): drop input items, reconstruct with a multinomial likelihood.

    ``loss_on="all"`` scores the reconstruction of every item of the user (the
    paper); ``loss_on="masked"`` scores only the items that were dropped — the
    masked-item (BERT-style) objective, where ``dropout`` is the mask rate.
    """

    def __init__(self, hidden_dims: tuple[int, ...] = (600,), latent_dim: int = 200, dropout: float = 0.5,
                 loss_on: str = "all", lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int = 128,
                 n_epochs: int = 100, patience: int = 5, seed: int = 0, device=None):
        super().__init__(lr, weight_decay, batch_size, n_epochs, patience, seed, device)
        if loss_on not in {"all", "masked"}:
            raise ValueError(f"loss_on must be 'all' or 'masked', got {loss_on!r}")
        if loss_on == "masked" and dropout == 0:
            raise ValueError("loss_on='masked' needs dropout > 0: with nothing masked there is nothing to predict")
        _check_positive(latent_dim=latent_dim, **{f"hidden_dims[{i}]": d for i, d in enumerate(hidden_dims)})
        self.hidden_dims, self.latent_dim, self.loss_on = tuple(hidden_dims), latent_dim, loss_on
        self.dropout = _check_rate("dropout", dropout)
        self.name = "Mult-DAE" if loss_on == "all" else "masked-item DAE"

    def _build(self, n_rows: int, n_cols: int) -> nn.Module:
        return MultDAENet(n_cols, self.hidden_dims, self.latent_dim, self.dropout)

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        keep = keep_mask(x, self.dropout, training=True)
        target = x if self.loss_on == "all" else x * (1.0 - keep)
        return multinomial_nll(self.net_(x, keep), target)


class MultVAE(_UserAutoEncoder):
    """Mult-VAE (Liang et al., 2018): multinomial likelihood, Gaussian latent, KL annealed to ``beta_cap``.

    Loss per user: -E_q[log p(x|z)] + β · KL(q(z|x) || N(0, I)), with
    β = min(beta_cap, updates / anneal_steps). ``beta_history_`` records β at
    the end of every epoch, so validation can be read against β.
    """

    def __init__(self, hidden_dims: tuple[int, ...] = (600,), latent_dim: int = 200, dropout: float = 0.5,
                 beta_cap: float = 0.2, anneal_steps: int = 2000, lr: float = 1e-3, weight_decay: float = 0.0,
                 batch_size: int = 128, n_epochs: int = 100, patience: int = 5, seed: int = 0, device=None):
        super().__init__(lr, weight_decay, batch_size, n_epochs, patience, seed, device)
        _check_positive(latent_dim=latent_dim, anneal_steps=anneal_steps,
                        **{f"hidden_dims[{i}]": d for i, d in enumerate(hidden_dims)})
        check_finite(beta_cap=beta_cap)
        if beta_cap < 0:
            raise ValueError(f"beta_cap must be >= 0 (0 drops the KL term), got {beta_cap}")
        self.hidden_dims, self.latent_dim = tuple(hidden_dims), latent_dim
        self.dropout = _check_rate("dropout", dropout)
        self.beta_cap, self.anneal_steps = beta_cap, anneal_steps
        self.name = "Mult-VAE"

    def _build(self, n_rows: int, n_cols: int) -> nn.Module:
        self.beta_history_: list[float] = []
        return MultVAENet(n_cols, self.hidden_dims, self.latent_dim, self.dropout)

    @property
    def beta(self) -> float:
        return annealed_beta(self.step_, self.anneal_steps, self.beta_cap)

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        logits, mu, logvar = self.net_(x, keep_mask(x, self.dropout, training=True))
        return multinomial_nll(logits, x) + self.beta * gaussian_kl(mu, logvar)

    def _end_epoch(self, epoch: int) -> None:
        self.beta_history_.append(self.beta)

    @torch.no_grad()
    def encode(self, users: np.ndarray, history: History) -> np.ndarray:
        """Posterior means mu (len(users) × latent_dim): the users' positions in the latent space."""
        self.net_.eval()
        return self.net_.encode(_dense_rows(history.matrix, np.asarray(users), self.device))[0].cpu().numpy()


# --- ListCVAE: generating a whole slate ------------------------------------------------

class ListCVAENet(nn.Module):
    """A conditional VAE over slates of k items (Jiang et al., 2019).

    Condition c = [history embedding, response vector r ∈ {0,1}^k].
    Encoder q(z | slate, c), prior p(z | c), decoder p(slate | z, c) = Π_j softmax over items at position j.
    """

    def __init__(self, n_items: int, slate_size: int, embed_dim: int, hidden_dim: int, latent_dim: int,
                 pretrained: MultVAENet | None = None):
        super().__init__()
        self.slate_size = slate_size
        if pretrained is None:
            self.history = nn.Sequential(nn.Linear(n_items, embed_dim), nn.Tanh())
            self.items = nn.Embedding(n_items, embed_dim)
            self.item_bias = nn.Parameter(torch.zeros(n_items))
            history_dim = embed_dim
        else:  # borrow a trained Mult-VAE's user encoder and item vectors, frozen
            output = pretrained.decoder[-1]
            self.history = PosteriorMean(pretrained).requires_grad_(False)
            self.items = nn.Embedding.from_pretrained(output.weight.detach().clone(), freeze=True)
            self.register_buffer("item_bias", output.bias.detach().clone())
            embed_dim, history_dim = output.weight.shape[1], pretrained.to_mu.out_features
        cond_dim = history_dim + slate_size
        self.encoder = _mlp([slate_size * embed_dim + cond_dim, hidden_dim, 2 * latent_dim])
        self.prior = _mlp([cond_dim, hidden_dim, 2 * latent_dim])
        self.decoder = _mlp([latent_dim + cond_dim, hidden_dim, slate_size * embed_dim])

    def condition(self, history: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
        """history: batch × n_items bag; response: batch × k -> batch × (history_dim + k)."""
        return torch.cat([self.history(F.normalize(history, dim=1)), response], dim=1)

    def decode(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """-> batch × k × n_items logits, one softmax per slate position."""
        out = self.decoder(torch.cat([z, cond], dim=1)).view(len(z), self.slate_size, -1)
        return out @ self.items.weight.T + self.item_bias

    def forward(self, slate: torch.Tensor, history: torch.Tensor, response: torch.Tensor):
        cond = self.condition(history, response)
        mu, logvar = self.encoder(torch.cat([self.items(slate).flatten(1), cond], dim=1)).chunk(2, dim=1)
        prior_mu, prior_logvar = self.prior(cond).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z, cond), (mu, logvar), (prior_mu, prior_logvar)


def gaussian_kl_between(q: tuple[torch.Tensor, torch.Tensor], p: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """KL(N(q_mu, e^q_logvar) || N(p_mu, e^p_logvar)), summed over dimensions, averaged over the batch."""
    (q_mu, q_logvar), (p_mu, p_logvar) = q, p
    kl = p_logvar - q_logvar + (torch.exp(q_logvar) + (q_mu - p_mu) ** 2) / torch.exp(p_logvar) - 1.0
    return 0.5 * kl.sum(dim=1).mean()


def simulate_slates(sequences: list[np.ndarray], n_items: int, slate_size: int, rng: np.random.Generator,
                    skip_prob: float = 0.5, min_context: int = 5, item_weights: np.ndarray | None = None,
                    per_user: int = 1):
    """Logged slates made from interaction histories, ``per_user`` per user who has enough items.

    We have no real logs of shown slates, so we simulate them: cut the user's
    sequence at a random point, show the next ``slate_size`` items, and replace
    each with probability ``skip_prob`` by a random item (∝ ``item_weights``)
    that the user "skipped" (response 0). Returns (users, context 0/1 matrix,
    slates, responses), one row per slate; slates and responses are rows × k.
    """
    if per_user < 1:
        raise ValueError(f"per_user must be >= 1, got {per_user}")
    lengths = np.array([len(s) for s in sequences])
    eligible = np.flatnonzero(lengths >= min_context + slate_size)
    if len(eligible) == 0:
        raise ValueError(f"no user has the {min_context + slate_size} items needed for a context and a slate")
    padded = np.zeros((len(eligible), lengths[eligible].max()), dtype=np.int64)
    mask = np.arange(padded.shape[1])[None, :] < lengths[eligible][:, None]
    padded[mask] = np.concatenate([sequences[u] for u in eligible])
    rows = np.repeat(np.arange(len(eligible)), per_user)
    users, padded, mask = eligible[rows], padded[rows], mask[rows]
    cuts = rng.integers(min_context, lengths[users] - slate_size + 1)
    slates = np.take_along_axis(padded, cuts[:, None] + np.arange(slate_size)[None, :], axis=1)
    skipped = rng.random(slates.shape) < skip_prob
    p = None if item_weights is None else item_weights / item_weights.sum()
    slates[skipped] = rng.choice(n_items, size=int(skipped.sum()), p=p)
    before = mask & (np.arange(padded.shape[1])[None, :] < cuts[:, None])
    rows, cols = np.nonzero(before)
    context = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, padded[rows, cols])),
                            shape=(len(users), n_items))
    context.data[:] = 1.0
    return users, context, slates, (~skipped).astype(np.float32)


class ListCVAE:
    """Generate a slate of ``slate_size`` items at once, conditioned on the history and a wished-for response.

    Trained on simulated logged slates (see ``simulate_slates``). ``generate``
    conditions on the "ideal response" (every item clicked) and decodes each
    position greedily, never repeating an item or recommending a seen one.
    ``pretrained`` (a fitted ``MultVAE``) lends its frozen posterior mean as the
    history embedding and its decoder's item vectors as the item space (then
    ``embed_dim`` is unused), so the CVAE only learns how to lay out a slate.
    ``score`` returns how strongly the decoder wants each item at any position
    (the sum of the per-position probabilities), so the usual evaluator applies.
    """

    name = "ListCVAE"

    def __init__(self, slate_size: int = 10, embed_dim: int = 64, hidden_dim: int = 256, latent_dim: int = 32,
                 beta: float = 1.0, skip_prob: float = 0.3, slates_per_user: int = 4,
                 pretrained: "MultVAE | None" = None, lr: float = 3e-3, batch_size: int = 128,
                 n_epochs: int = 100, patience: int = 5, seed: int = 0, device=None):
        _check_positive(slate_size=slate_size, embed_dim=embed_dim, hidden_dim=hidden_dim, latent_dim=latent_dim,
                        slates_per_user=slates_per_user, lr=lr, batch_size=batch_size, n_epochs=n_epochs,
                        patience=patience)
        if slate_size < 2:
            raise ValueError(f"a slate needs at least 2 items, got slate_size={slate_size}")
        check_finite(beta=beta)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.slate_size, self.embed_dim = slate_size, embed_dim
        self.hidden_dim, self.latent_dim = hidden_dim, latent_dim
        self.beta, self.skip_prob = beta, _check_rate("skip_prob", skip_prob)
        self.slates_per_user = slates_per_user
        if pretrained is not None and not isinstance(getattr(pretrained, "net_", None), MultVAENet):
            raise ValueError(f"pretrained must be a fitted MultVAE, got {type(pretrained).__name__}")
        self.pretrained = pretrained
        self.lr, self.batch_size, self.n_epochs, self.patience, self.seed = lr, batch_size, n_epochs, patience, seed
        self.device = torch.device(device) if device is not None else get_device()

    def fit(self, X, sequences: list[np.ndarray], validate: Callable | None = None) -> "ListCVAE":
        """X: users × items training matrix (for popularity); sequences: each user's training items in time order."""
        X = check_interaction_matrix(X)
        if len(sequences) != X.shape[0]:
            raise ValueError(f"need one sequence per user: X has {X.shape[0]} rows, got {len(sequences)} sequences")
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        popularity = np.asarray(X.sum(axis=0)).ravel() + 1.0
        # A copy, so that freezing it leaves the VAE itself untouched.
        pretrained = None if self.pretrained is None else copy.deepcopy(self.pretrained.net_)
        self.net_ = ListCVAENet(X.shape[1], self.slate_size, self.embed_dim, self.hidden_dim,
                                self.latent_dim, pretrained).to(self.device)
        optimizer = torch.optim.Adam([p for p in self.net_.parameters() if p.requires_grad], lr=self.lr)

        def train_epoch(epoch: int) -> float:
            self.net_.train()
            # Fresh cuts and skips every epoch: each user yields new simulated slates.
            _, context, slates, responses = simulate_slates(sequences, X.shape[1], self.slate_size, rng,
                                                            self.skip_prob, item_weights=popularity,
                                                            per_user=self.slates_per_user)
            order, total = rng.permutation(len(slates)), 0.0
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                slate = torch.as_tensor(slates[batch], device=self.device)
                response = torch.as_tensor(responses[batch], device=self.device)
                logits, q, p = self.net_(slate, _dense_rows(context, batch, self.device), response)
                loss = (F.cross_entropy(logits.flatten(0, 1), slate.flatten(), reduction="sum") / len(batch)
                        + self.beta * gaussian_kl_between(q, p))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            return total / len(order)

        self.fit_result_: FitResult = fit_loop(
            train_epoch, self.n_epochs, None if validate is None else (lambda: validate(self)),
            patience=self.patience, module=self.net_, desc=self.name)
        return self

    def _position_logits(self, users: np.ndarray, history: History, generator, response=None) -> torch.Tensor:
        """len(users) × k × n_items logits, z from the prior given the response (default: all clicked)."""
        bag = _dense_rows(history.matrix, np.asarray(users), self.device)
        wished = torch.ones(len(bag), self.slate_size, device=self.device)
        if response is not None:
            response = torch.as_tensor(np.asarray(response, dtype=np.float32), device=self.device)
            if response.shape != (self.slate_size,):
                raise ValueError(f"response must hold one 0/1 value per slate position ({self.slate_size}), "
                                 f"got shape {tuple(response.shape)}")
            wished = wished * response
        cond = self.net_.condition(bag, wished)
        prior_mu, prior_logvar = self.net_.prior(cond).chunk(2, dim=1)
        if generator is None:
            z = prior_mu
        else:
            noise = torch.randn(prior_mu.shape, generator=generator).to(self.device)
            z = prior_mu + noise * torch.exp(0.5 * prior_logvar)
        return self.net_.decode(z, cond)

    @torch.no_grad()
    def generate(self, users: np.ndarray, history: History, seed: int | None = None,
                 response=None) -> np.ndarray:
        """One slate per user (len(users) × k item ids), decoded greedily position by position.

        ``seed=None`` decodes the prior mean (deterministic); a seed samples z, so
        the same user can get different slates. ``response`` (k values in {0, 1})
        is the wished-for response; by default every position is clicked.
        """
        self.net_.eval()
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        logits = self._position_logits(users, history, generator, response)
        blocked = _dense_rows(history.matrix, np.asarray(users), self.device) > 0
        slate = torch.empty(len(users), self.slate_size, dtype=torch.long, device=self.device)
        for position in range(self.slate_size):  # k steps, each vectorised over users
            chosen = logits[:, position].masked_fill(blocked, float("-inf")).argmax(dim=1)
            slate[:, position] = chosen
            blocked[torch.arange(len(users), device=self.device), chosen] = True
        return slate.cpu().numpy()

    @torch.no_grad()
    def score(self, users: np.ndarray, history: History) -> np.ndarray:
        self.net_.eval()
        probabilities = torch.softmax(self._position_logits(np.asarray(users), history, None), dim=2)
        return probabilities.sum(dim=1).cpu().numpy()

    @property
    def n_params(self) -> int:
        return count_parameters(self.net_)
