"""Lesson 21's online-evaluation tools against hand-computed cases and the libraries they must equal."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats
from statsmodels.stats.power import NormalIndPower

from course_utils import simulation as sim
from course_utils.data.fashion_shop import make_fashion_shop
from course_utils.data.fashion_mnist import load_fashion_mnist
from course_utils.models.baselines import EASE


@pytest.fixture(scope="module")
def shop():
    images = load_fashion_mnist(subset=True, verbose=False)
    return make_fashion_shop(n_users=200, seed=1, images=images.images[:120], labels=images.labels[:120],
                             mean_interactions=6)


# ---------------------------------------------------------------- slates
def test_top_k_slates_orders_breaks_ties_by_id_and_excludes():
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [3.0, 2.0, 1.0, 0.0]])
    assert sim.top_k_slates(scores, 3).tolist() == [[1, 3, 2], [0, 1, 2]]
    exclude = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 0, 0]]))
    assert sim.top_k_slates(scores, 2, exclude=exclude).tolist() == [[3, 2], [1, 2]]


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_top_k_slates_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        sim.top_k_slates(np.ones((2, 4)), k)


def test_top_k_slates_bad_inputs():
    with pytest.raises(ValueError, match="non-empty users × items"):
        sim.top_k_slates(np.ones((0, 4)), 2)
    with pytest.raises(ValueError, match="at least k=4"):
        sim.top_k_slates(np.ones((1, 4)), 4, exclude=np.array([[True, False, False, False]]))
    with pytest.raises(ValueError, match="must match scores"):
        sim.top_k_slates(np.ones((2, 4)), 2, exclude=np.zeros((2, 3), bool))


# ---------------------------------------------------------------- A/B
def test_sample_size_hand_value_and_statsmodels():
    # d = 0.2: 2 * ((1.959964 + 0.841621) / 0.2)^2 = 392.4
    assert sim.sample_size_per_arm(0.2) == pytest.approx(392.443, abs=0.01)
    for d in (0.05, 0.146, 0.5, -0.3):
        assert sim.sample_size_per_arm(d) == pytest.approx(NormalIndPower().solve_power(abs(d), alpha=0.05, power=0.8),
                                                           rel=1e-4)
    assert sim.sample_size_per_arm(0.2, alpha=0.01, power=0.9) == pytest.approx(
        NormalIndPower().solve_power(0.2, alpha=0.01, power=0.9), rel=1e-4)


@pytest.mark.parametrize("args", [(0.0,), (np.nan,), (0.2, 1.5), (0.2, 0.05, 0.0)])
def test_sample_size_bad_inputs(args):
    with pytest.raises(ValueError):
        sim.sample_size_per_arm(*args)


def test_ab_test_hand_computed_and_equal_to_scipy():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0, 8.0])
    r = sim.ab_test(a, b)
    # means 2 and 5; variances 1 and 6.667; se = sqrt(1/3 + 6.667/4) = sqrt(2) = 1.414
    assert r.diff == pytest.approx(3.0) and r.statistic == pytest.approx(3 / np.sqrt(1 / 3 + (20 / 3) / 4))
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert r.statistic == pytest.approx(ref.statistic) and r.p_value == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (r.low, r.high) == pytest.approx((ci.low, ci.high))
    assert r.relative_lift == pytest.approx(1.5)


def test_ab_test_winner_and_sentence():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 400), rng.normal(0.5, 1, 400)
    r = sim.ab_test(a, b, "old", "new")
    assert r.winner == "new" and "**new** wins" in r.sentence()
    level = sim.ab_test(a, a + rng.normal(0, 1e-3, 400), "old", "new")
    assert level.winner == "no winner" and level.sentence().startswith("No significant difference")


def test_ab_test_bad_inputs():
    with pytest.raises(ValueError, match="at least 2 users"):
        sim.ab_test([1.0], [1.0, 2.0])    # a single user in one arm
    with pytest.raises(ValueError, match="non-empty"):
        sim.ab_test([], [1.0, 2.0])
    with pytest.raises(ValueError, match="constant"):
        sim.ab_test([1.0, 1.0], [2.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        sim.ab_test([1.0, np.nan], [2.0, 3.0])


def test_run_ab_test_is_reproducible_and_needs_matching_slates(shop):
    users = np.arange(shop.n_users)
    rng = np.random.default_rng(0)
    good = np.argsort(-shop.true_utility(), axis=1)[:, :5]
    poor = rng.permuted(np.tile(np.arange(shop.n_items), (shop.n_users, 1)), axis=1)[:, :5]
    first = sim.run_ab_test(shop, poor, good, users, seed=3)
    assert first.decision == sim.run_ab_test(shop, poor, good, users, seed=3).decision
    assert first.winner == "B" and first.n_a + first.n_b == shop.n_users
    with pytest.raises(ValueError, match="same shape"):
        sim.run_ab_test(shop, poor, good[:, :4], users, seed=3)
    with pytest.raises(ValueError, match="at least 4 users"):
        sim.split_halves([1, 2, 3], seed=0)


# ---------------------------------------------------------------- novelty
def test_novelty_multiplier_hand_values():
    assert sim.novelty_multiplier([0, 3, 6], 0.3, 3.0) == pytest.approx([1.3, 1.15, 1.075])
    assert sim.novelty_multiplier(10, 0.0, 2.0) == pytest.approx(1.0)
    for args in [(1, -0.1, 3.0), (1, 0.3, 0.0), (-1, 0.3, 3.0)]:
        with pytest.raises(ValueError):
            sim.novelty_multiplier(*args)


def test_simulate_novelty_fades_and_matches_multiplier(shop):
    slates = np.argsort(-shop.true_utility(), axis=1)[:, :5]
    daily = sim.simulate_novelty(shop, slates, slates, np.arange(shop.n_users), n_days=6, boost=1.0,
                                 half_life=1.0, seed=0)
    assert list(daily["multiplier"]) == pytest.approx([1 + 0.5 ** d for d in range(6)])
    # Same slates in both arms: the lift comes from the novelty boost alone and fades.
    assert daily["lift"].iloc[0] > 0.5 * daily["clicks A"].iloc[0] and daily["lift"].iloc[0] > daily["lift"].iloc[-1]
    early = sim.pooled_lift(daily, 0, 1)
    assert early.diff == pytest.approx(daily["lift"].iloc[:2].mean())
    with pytest.raises(ValueError, match="first_day"):
        sim.pooled_lift(daily, 3, 9)
    with pytest.raises(ValueError, match="n_days"):
        sim.simulate_novelty(shop, slates, slates, np.arange(shop.n_users), 0, 1.0, 1.0, 0)


# ---------------------------------------------------------------- interleaving
def test_team_draft_fixed_coins_hand_case():
    a, b = np.array([[10, 11, 12, 13, 14]]), np.array([[12, 15, 10, 16, 17]])
    # Round 1, A first: A takes 10, B takes 12. Round 2, B first: B takes 15 (12 is taken), A takes 11.
    # Round 3, A first: A takes 13 (the slate is full after it).
    slate, team = sim.team_draft_interleave(a, b, 5, np.array([[True, False, True]]))
    assert slate.tolist() == [[10, 12, 15, 11, 13]] and team.tolist() == [[0, 1, 1, 0, 0]]
    # B first in round 1: B takes 12, A takes 10; round 2, A first: A 11, B 15.
    slate, team = sim.team_draft_interleave(a, b, 4, np.array([[False, True]]))
    assert slate.tolist() == [[12, 10, 11, 15]] and team.tolist() == [[1, 0, 0, 1]]


def test_team_draft_identical_rankings_and_many_users():
    ranking = np.array([[3, 1, 2, 0]] * 3)
    coins = np.array([[True, True], [False, False], [True, False]])
    slate, team = sim.team_draft_interleave(ranking, ranking, 4, coins)
    assert (slate == ranking).all()      # identical rankings give the ranking itself
    assert (team.sum(1) == 2).all()      # and each team places half of it


def test_team_draft_bad_inputs():
    a = np.array([[0, 1, 2]])
    with pytest.raises(ValueError, match="same shape"):
        sim.team_draft_interleave(a, np.array([[0, 1]]), 2, np.array([[True]]))
    with pytest.raises(ValueError, match="fewer than k"):
        sim.team_draft_interleave(a, a, 4, np.array([[True, True]]))
    with pytest.raises(ValueError, match="distinct"):
        sim.team_draft_interleave(np.array([[0, 0, 1]]), a, 2, np.array([[True]]))
    with pytest.raises(ValueError, match="coins"):
        sim.team_draft_interleave(a, a, 2, np.array([[1]]))
    with pytest.raises(ValueError, match="k must be"):
        sim.team_draft_interleave(a, a, 0, np.zeros((1, 0), bool))
    with pytest.raises(ValueError, match="non-empty"):
        sim.team_draft_interleave(np.zeros((0, 3), int), np.zeros((0, 3), int), 2, np.zeros((0, 1), bool))


def test_credit_and_sign_test():
    teams = np.array([[0, 1, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]])
    clicks = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 0, 1, 1]], bool)
    assert sim.interleaving_credit(teams, clicks).tolist() == [-1, 0, 1]
    for wa, wb in [(3, 9), (10, 10), (0, 5), (40, 61)]:
        assert sim.sign_test_p(wa, wb) == pytest.approx(stats.binomtest(wb, wa + wb, 0.5).pvalue)
    assert sim.sign_test_p(0, 0) == 1.0
    r = sim.interleaving_test(np.array([1] * 30 + [-1] * 10 + [0] * 10), "A", "B")
    assert (r.wins_b, r.wins_a, r.ties) == (30, 10, 10) and r.delta == pytest.approx((30 + 5) / 50 - 0.5)
    assert r.winner == "B" and r.p_value == pytest.approx(stats.binomtest(30, 40).pvalue)
    with pytest.raises(ValueError, match="one shape"):
        sim.interleaving_credit(teams, clicks[:, :3])
    with pytest.raises(ValueError, match="0 \\(A\\) or 1"):
        sim.interleaving_credit(teams + 1, clicks)
    with pytest.raises(ValueError, match="-1, 0 and 1"):
        sim.interleaving_test(np.array([]))


def test_interleaving_on_the_shop_finds_the_better_ranking(shop):
    users = np.arange(shop.n_users)
    utility = shop.true_utility()
    best, worst = np.argsort(-utility, axis=1)[:, :10], np.argsort(utility, axis=1)[:, :10]
    result, credit = sim.run_interleaving(shop, worst, best, users, 6, seed=0)
    assert result.winner == "B" and result.wins_b > 5 * result.wins_a and credit.shape == (shop.n_users,)
    assert result.decision == sim.run_interleaving(shop, worst, best, users, 6, seed=0)[0].decision


# ---------------------------------------------------------------- sensitivity
def test_detection_rates_and_users_needed():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (4, 2000)), rng.normal(0.3, 1, (4, 2000))
    sizes = [20, 100, 400, 1600]
    rates = sim.detection_rates("ab", (a, b), sizes, 200, seed=1)
    assert np.all(np.diff(rates) >= -0.05) and rates[-1] > 0.95 and rates[0] < 0.3
    # d = 0.3: the formula says 2 * 174 = 349 users; the simulation lands near it
    assert 200 < sim.users_needed(sizes, rates) < 600
    aa = sim.detection_rates("ab", (a, a[::-1]), [1000], 400, seed=2)[0]
    assert aa < 0.06                       # false winners stay near alpha / 2
    credit = rng.choice([-1, 0, 1], size=(3, 1000), p=[0.3, 0.3, 0.4])
    assert sim.detection_rates("interleaving", credit, [800], 100, seed=0)[0] > 0.8
    with pytest.raises(ValueError, match="design"):
        sim.detection_rates("xyz", credit, [100], 100, seed=0)
    with pytest.raises(ValueError, match="same shape|one shape"):
        sim.detection_rates("ab", (a, b[:, :10]), [100], 100, seed=0)
    with pytest.raises(ValueError, match="sizes"):
        sim.detection_rates("interleaving", credit, [], 100, seed=0)


def test_users_needed_interpolates_on_log_scale():
    assert sim.users_needed([100, 400], [0.6, 1.0]) == pytest.approx(200.0)   # halfway in log between 100 and 400
    assert sim.users_needed([100, 400], [0.9, 1.0]) == 100.0
    assert np.isnan(sim.users_needed([100, 400], [0.1, 0.5]))
    with pytest.raises(ValueError, match="one length"):
        sim.users_needed([100, 400], [0.1])


# ---------------------------------------------------------------- feedback loop
def test_explore_slates_keeps_items_distinct_and_allowed():
    rng = np.random.default_rng(0)
    greedy = np.array([[0, 1, 2], [3, 4, 5]])
    exclude = np.zeros((2, 10), bool)
    exclude[:, 9] = True
    out = sim.explore_slates(greedy, exclude, 1.0, rng)
    assert (np.sort(out, 1)[:, 1:] != np.sort(out, 1)[:, :-1]).all() and not np.isin(out, [9]).any()
    assert not (out == greedy).any()                       # epsilon 1: every slot explores, away from the greedy items
    assert (sim.explore_slates(greedy, exclude, 0.0, rng) == greedy).all()
    with pytest.raises(ValueError, match="epsilon"):
        sim.explore_slates(greedy, exclude, 1.5, rng)


def test_feedback_loop_bookkeeping(shop):
    log = sim.interaction_matrix(shop.interactions["user"], shop.interactions["item"], (shop.n_users, shop.n_items))
    frame = sim.feedback_loop(shop, log, lambda: EASE(50.0), 3, 4, 0.0, seed=0, item_vectors=shop.item_features[:, :15])
    assert list(frame["round"]) == [0, 1, 2]
    # The log grows by exactly the clicks of each round (clicked items are never shown again).
    growth = np.diff(np.r_[log.nnz, frame["log size"]])
    assert growth == pytest.approx(frame["clicks"] * shop.n_users)
    assert ((frame["exposure Gini"] >= 0) & (frame["exposure Gini"] < 1)).all()
    assert ((frame["coverage"] > 0) & (frame["coverage"] <= 1)).all()
    assert (frame["utility"] > 0).all()   # EASE beats random slates on the true utility
    again = sim.feedback_loop(shop, log, lambda: EASE(50.0), 3, 4, 0.0, seed=0, item_vectors=shop.item_features[:, :15])
    assert again.equals(frame)
    with pytest.raises(ValueError, match="initial_log"):
        sim.feedback_loop(shop, log[:5], lambda: EASE(50.0), 2, 4, 0.0, seed=0)
    with pytest.raises(ValueError, match="n_rounds"):
        sim.feedback_loop(shop, log, lambda: EASE(50.0), 0, 4, 0.0, seed=0)
    with pytest.raises(ValueError, match="k must be"):
        sim.feedback_loop(shop, log, lambda: EASE(50.0), 2, 0, 0.0, seed=0)


def test_seed_interval():
    mean, low, high = sim.seed_interval([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert np.isnan(sim.seed_interval([1.0])[1])
    assert sim.format_p(0.0001) == "< 0.001" and sim.format_p(0.0421) == "= 0.042"


def test_seed_difference_claim_cases():
    assert sim.seed_difference_claim([0.1, 0.12, 0.11], "coverage").case == "higher"
    assert sim.seed_difference_claim([-0.1, -0.12, -0.11], "coverage").case == "lower"
    level = sim.seed_difference_claim([-0.1, 0.1, 0.02], "coverage")
    assert level.case == "level" and "no clear difference" in level.text
    assert sim.seed_difference_claim([0.3], "coverage").case == "one seed"
