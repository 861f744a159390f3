"""Mixture search by regression over proxy runs: drawing the proxy mixtures, fitting, proposing. Pure.

The proxies' weights over the groups (benchmarks, categories or tasks) are Dirichlet draws, a function of
(seed, groups, count, concentration). The response model is ridge regression (scikit-learn's `Ridge`) of
the score on the log-weights, log(max(w, FLOOR)): score = b + sum_g c_g log w_g, the form RegMix-style
studies fit, which prices the first examples of a group more than the last. Its held-out quality is the
leave-one-out Spearman correlation between predicted and actual scores. The proposal is the mixture of
best predicted score on the simplex within the constraints' bounds (min_weight <= w_g <= max_ratio_to_eps
x w_g(EPS)), found by SLSQP from the EPS mixture, the best proxy and the bounds' centre (each projected
onto the bounds first); its predicted score is never below that of the best start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from imlsweep.data.mixing import normalise
from imlsweep.data.mixture import MixtureConfig
from imlsweep.errors import UserError
from imlsweep.sweep.spec import MixtureSearch, ProposalConstraints

# Weights below this count as this much in the log-weights (a group a mixture leaves out has weight 0).
FLOOR = 1e-4


def draw_mixtures(groups: list[str], count: int, concentration: float, seed: int) -> list[dict[str, float]]:
    """`count` mixtures over `groups`, Dirichlet(concentration, ..., concentration), seeded."""
    draws = np.random.default_rng(seed).dirichlet(np.full(len(groups), concentration), size=count)
    return [{group: float(weight) for group, weight in zip(groups, row)} for row in draws]


def mixture_weights(mixture: MixtureConfig, manifest: Any, search: MixtureSearch) -> dict[str, float]:
    """The shares a trial's mixture plan gives the search's groups on a corpus (its manifest), summing to 1:
    the drawn weights for a Dirichlet point, what EPS/temperature mixing makes of the task sizes for the EPS
    point (a group outside `groups` left out)."""
    from imlsweep.data.plan import group_shares, plan_mixture

    shares = group_shares(plan_mixture(mixture, manifest), search.over)
    return normalise({group: shares.get(group, 0.0) for group in search.groups})


def weight_matrix(mixtures: list[dict[str, float]], groups: list[str]) -> np.ndarray:
    """Rows of weights in `groups` order (a group a mixture does not name weighs 0)."""
    return np.array([[mixture.get(group, 0.0) for group in groups] for mixture in mixtures], dtype=float)


def log_features(weights: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(weights, FLOOR))


@dataclass(frozen=True)
class ResponseFit:
    """score = intercept + sum_g coefficients[g] * log(max(w_g, FLOOR)), by ridge regression."""

    groups: list[str]
    intercept: float
    coefficients: dict[str, float]
    alpha: float
    loo_predictions: list[float]  # each point predicted by the fit without it
    loo_spearman: float | None  # None: too few points, or constant scores

    def predict(self, mixture: dict[str, float]) -> float:
        return float(self.predict_matrix(weight_matrix([mixture], self.groups))[0])

    def predict_matrix(self, weights: np.ndarray) -> np.ndarray:
        coefficients = np.array([self.coefficients[group] for group in self.groups])
        return self.intercept + log_features(weights) @ coefficients


def fit_response(mixtures: list[dict[str, float]], scores: list[float], groups: list[str], alpha: float) -> ResponseFit:
    """Ridge of scores on log-weights, with its leave-one-out predictions and their Spearman correlation."""
    from scipy.stats import spearmanr
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import LeaveOneOut, cross_val_predict

    if len(mixtures) != len(scores) or len(scores) < 3:
        raise UserError(f"mixture search: a fit needs at least 3 scored mixtures, got {len(scores)}")
    features, target = log_features(weight_matrix(mixtures, groups)), np.asarray(scores, dtype=float)
    model = Ridge(alpha=alpha).fit(features, target)
    held_out = cross_val_predict(Ridge(alpha=alpha), features, target, cv=LeaveOneOut())
    rho = None
    if np.ptp(target) > 0 and np.ptp(held_out) > 0:
        rho = float(spearmanr(held_out, target).statistic)
    return ResponseFit(groups=list(groups), intercept=float(model.intercept_),
                       coefficients={group: float(c) for group, c in zip(groups, model.coef_)}, alpha=alpha,
                       loo_predictions=[float(value) for value in held_out], loo_spearman=rho)


def weight_bounds(groups: list[str], eps_weights: dict[str, float],
                  constraints: ProposalConstraints) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) bound of each group's weight; an error names the constraint that leaves no mixture."""
    lower = np.full(len(groups), constraints.min_weight)
    upper = np.ones(len(groups))
    if constraints.max_ratio_to_eps is not None:
        upper = np.minimum(upper, constraints.max_ratio_to_eps * weight_matrix([eps_weights], groups)[0])
    if (upper < lower).any() or upper.sum() < 1.0 - 1e-9:
        tight = [group for group, low, high in zip(groups, lower, upper) if high < low]
        raise UserError(f"mixture_search.constraints: no mixture has every weight within [min_weight, "
                        f"max_ratio_to_eps x its EPS weight] (upper bounds sum to {upper.sum():.3g}"
                        + (f"; below min_weight for {', '.join(tight[:5])}" if tight else "") + ")")
    return lower, upper


def project_to_bounds(weights: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """The closest point to `weights` with lower <= w <= upper and sum(w) = 1 (bisection on the shift)."""
    low, high = float((weights - upper).min()), float((weights - lower).max())
    for _ in range(100):
        shift = (low + high) / 2
        if np.clip(weights - shift, lower, upper).sum() > 1:
            low = shift
        else:
            high = shift
    return np.clip(weights - (low + high) / 2, lower, upper)


def propose_mixture(fit: ResponseFit, eps_weights: dict[str, float], starts: list[dict[str, float]],
                    constraints: ProposalConstraints, mode: str = "max") -> dict[str, float]:
    """The mixture within the bounds whose predicted score is best (highest, or lowest for mode min)."""
    from scipy.optimize import minimize

    groups = fit.groups
    lower, upper = weight_bounds(groups, eps_weights, constraints)
    sign = -1.0 if mode == "max" else 1.0
    coefficients = np.array([fit.coefficients[group] for group in groups])

    def objective(weights: np.ndarray) -> tuple[float, np.ndarray]:
        clipped = np.maximum(weights, FLOOR)
        gradient = np.where(weights > FLOOR, coefficients / clipped, 0.0)
        return sign * float(fit.intercept + np.log(clipped) @ coefficients), sign * gradient

    points = [weight_matrix([start], groups)[0] for start in [eps_weights, *starts]] + [(lower + upper) / 2]
    best, best_value = None, np.inf
    for point in points:
        start = project_to_bounds(point, lower, upper)
        candidates = [start]
        solved = minimize(objective, start, jac=True, method="SLSQP", bounds=list(zip(lower, upper)),
                          constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
                          options={"maxiter": 500, "ftol": 1e-12})
        candidates.append(project_to_bounds(solved.x, lower, upper))
        for candidate in candidates:
            value = objective(candidate)[0]
            if value < best_value - 1e-12:
                best, best_value = candidate, value
    return {group: float(weight) for group, weight in zip(groups, best)}

