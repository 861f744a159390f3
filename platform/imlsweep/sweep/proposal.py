"""A mixture search's proposal: made by the driver when the stage's proxy trials have all finished, kept
as `<sweep dir>/<stage>.proposal.json` (what the report draws), and handed to the proposed trials.

Each proxy's weights are the group shares its mixture plan gives on the sweep's corpus
(`mixture_weights`). The scores are the completed proxies' `metric`.
The file holds the fit (`imlsweep.sweep.mixture_search`: ridge on log-weights, its coefficients and
leave-one-out predictions), every point, the EPS weights, the bounds, the proposed weights and the
scores the fit predicts for them.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from imlsweep import storage
from imlsweep.errors import UserError
from imlsweep.sweep.expand import MIXTURE_POINT_LABEL, PlannedTrial, proportion_params
from imlsweep.sweep.mixture_search import FLOOR, fit_response, mixture_weights, propose_mixture, weight_bounds
from imlsweep.sweep.spec import MixtureSearch
from imlsweep.sweep.sweep import Sweep
from imlsweep.trial_dir import TrialResult

PROPOSAL_FILE = "{stage}.proposal.json"
RESPONSE_MODEL = "ridge regression of the score on log(max(w, {floor})) of each group's weight w (scikit-learn Ridge)"
# Best proxies the proposal's search also starts from (besides the EPS mixture and the bounds' centre).
PROXY_STARTS = 3


def proposal_uri(sweep_uri: str, stage: str) -> str:
    return storage.join(sweep_uri, PROPOSAL_FILE.format(stage=stage))


def read_proposal(sweep_uri: str, stage: str) -> dict[str, Any] | None:
    text = storage.read_text(proposal_uri(sweep_uri, stage))
    return None if text is None else json.loads(text)


def proxy_score(result: TrialResult | None, metric: str) -> float | None:
    """A completed proxy's score, or None (failed, stopped early, or no such metric)."""
    if result is None or result.status != "completed":
        return None
    value = result.metrics.get(metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def make_proposal(stage: str, search: MixtureSearch, proxies: list[PlannedTrial],
                  results: dict[str, TrialResult | None], manifest: Any) -> dict[str, Any]:
    """The fit over the completed proxies and the proposed mixture; a UserError when too few completed."""
    points = [{"trial": trial.name, MIXTURE_POINT_LABEL: trial.labels[MIXTURE_POINT_LABEL],
               "weights": mixture_weights(trial.config.mixture, manifest, search),
               "score": proxy_score(results.get(trial.name), search.metric)} for trial in proxies]
    scored = [point for point in points if point["score"] is not None]
    if len(scored) < search.min_fitted:
        raise UserError(f"stage {stage}: {len(scored)} of {len(points)} proxy trials completed with a "
                        f"{search.metric!r} score; mixture_search.min_fitted asks for {search.min_fitted}")
    fit = fit_response([p["weights"] for p in scored], [p["score"] for p in scored], search.groups, search.ridge_alpha)
    for point, predicted in zip(scored, fit.loo_predictions):
        point["loo_predicted"] = predicted
    eps_weights = points[0]["weights"]  # the stage's own mixture is its first trial
    best = sorted(scored, key=lambda p: p["score"], reverse=search.mode == "max")[:PROXY_STARTS]
    proposed = propose_mixture(fit, eps_weights, [p["weights"] for p in best], search.constraints, search.mode)
    lower, upper = weight_bounds(search.groups, eps_weights, search.constraints)
    return {"stage": stage, "over": search.over, "groups": search.groups, "metric": search.metric, "mode": search.mode,
            "model": RESPONSE_MODEL.format(floor=FLOOR), "ridge_alpha": search.ridge_alpha,
            "intercept": fit.intercept, "coefficients": fit.coefficients, "loo_spearman": fit.loo_spearman,
            "fitted": len(scored), "points": points, "eps_weights": eps_weights,
            "constraints": search.constraints.model_dump(),
            "bounds": {group: [float(low), float(high)] for group, low, high in zip(search.groups, lower, upper)},
            "proposed_weights": proposed, "predicted_proposed": fit.predict(proposed),
            "predicted_eps": fit.predict(eps_weights)}


class MixtureProposals:
    """`proposals(stage)`: the params of the stage's proposed mixture (`SweepSearcher`'s `proposals`),
    made once and written to its file; a file an earlier run wrote is used while it fitted every proxy
    that has completed since. None (and a log line) when no proposal can be made."""

    def __init__(self, sweep: Sweep, log: Callable[[str], None]) -> None:
        self.sweep, self.log = sweep, log
        self.made: dict[str, dict[str, Any] | None] = {}

    def __call__(self, stage: str) -> dict[str, Any] | None:
        if stage not in self.made:
            self.made[stage] = self.proposal(stage)
        proposal = self.made[stage]
        return None if proposal is None else proportion_params(proposal["over"], proposal["proposed_weights"])

    def proposal(self, stage: str) -> dict[str, Any] | None:
        from imlsweep.corpus.store import Corpus

        search = next(s.mixture_search for s in self.sweep.spec.stages if s.name == stage)
        proxies = self.sweep.stage_trials(stage)
        results = {trial.name: self.sweep.trial_dir(trial.name).read_result() for trial in proxies}
        completed = {name for name, result in results.items() if proxy_score(result, search.metric) is not None}
        earlier = read_proposal(self.sweep.uri, stage)
        if earlier is not None and completed <= {p["trial"] for p in earlier["points"] if p["score"] is not None}:
            return earlier
        try:
            proposal = make_proposal(stage, search, proxies, results, Corpus.open(self.sweep.corpus_dir).manifest)
        except UserError as error:
            self.log(f"no proposed mixture, its trials are not run: {error}")
            return None
        storage.write_text(proposal_uri(self.sweep.uri, stage), json.dumps(proposal, indent=1))
        rho = proposal["loo_spearman"]
        self.log(f"stage {stage}: proposed mixture from {proposal['fitted']} proxies (leave-one-out Spearman "
                 f"{'n/a' if rho is None else f'{rho:.2f}'}): "
                 + ", ".join(f"{group} {weight:.3f}" for group, weight in proposal["proposed_weights"].items()))
        return proposal
