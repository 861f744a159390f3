"""A mixture search in the report: the fit, the proposed weights against the EPS mixture, and predicted vs
actual scores, from the stage's `<stage>.proposal.json` (`imlsweep.sweep.proposal`) and the trials' results.

Predicted scores: a proxy's is its leave-one-out prediction (the fit without it); the proposed mixture's
and the EPS mixture's are the fit's. Actual scores are the search's `metric` from each trial's result.
Trials outside the proxy stage that carry a `mixture_point` label (the proposed mixture at each scale, an
EPS baseline at target scale) are listed with their scale (their cell, else their stage); the fit's
prediction is at proxy scale, so only proxy-scale rows compare predicted with actual.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from imlsweep import storage
from imlsweep.sweep.expand import EPS_POINT, MIXTURE_POINT_LABEL, PROPOSED_POINT
from imlsweep.sweep.proposal import proxy_score
from imlsweep.trial_dir import TrialDir

PROXY_SCALE = "proxy"


def search_stages(spec: dict[str, Any]) -> list[str]:
    """The mixture_search stages of a spec as its run wrote it (`sweep.yaml`)."""
    return [stage["name"] for stage in spec.get("stages", []) if stage.get("mixture_search")]


def weights_frame(proposal: dict[str, Any]) -> pd.DataFrame:
    """Per group: its weight in the EPS mixture and in the proposed one, their ratio, the bounds, and the
    fit's coefficient on its log-weight."""
    rows = []
    for group in proposal["groups"]:
        eps, proposed = proposal["eps_weights"][group], proposal["proposed_weights"][group]
        low, high = proposal["bounds"][group]
        rows.append({"group": group, "EPS weight": eps, "proposed weight": proposed,
                     "proposed / EPS": proposed / eps if eps > 0 else None, "lower bound": low, "upper bound": high,
                     "coefficient": proposal["coefficients"][group]})
    return pd.DataFrame(rows).set_index("group")


def predicted_vs_actual(proposal: dict[str, Any], table: pd.DataFrame, sweep_dir: str) -> pd.DataFrame:
    """A row per proxy and per other trial with a `mixture_point`: scale, predicted and actual score."""
    rows = [{"trial": point["trial"], MIXTURE_POINT_LABEL: point[MIXTURE_POINT_LABEL], "scale": PROXY_SCALE,
             "predicted": point.get("loo_predicted"), "actual": point["score"], "prediction": "leave-one-out"}
            for point in proposal["points"]]
    proxies = {point["trial"] for point in proposal["points"]}
    if MIXTURE_POINT_LABEL in table.columns:
        others = table[table[MIXTURE_POINT_LABEL].isin([EPS_POINT, PROPOSED_POINT]) & ~table["trial"].isin(proxies)]
        cells = others["cell"] if "cell" in others.columns else pd.Series(None, index=others.index)
        for trial, point, stage, cell in (others.assign(cell=cells)[["trial", MIXTURE_POINT_LABEL, "stage", "cell"]]
                                          .drop_duplicates("trial").itertuples(index=False)):
            result = TrialDir(storage.join(sweep_dir, trial)).read_result()
            predicted = proposal["predicted_proposed"] if point == PROPOSED_POINT else proposal["predicted_eps"]
            rows.append({"trial": trial, MIXTURE_POINT_LABEL: point, "scale": cell if isinstance(cell, str) else stage,
                         "predicted": predicted, "actual": proxy_score(result, proposal["metric"]),
                         "prediction": "fit (proxy scale)"})
    return pd.DataFrame(rows).set_index("trial")


def fit_summary(proposal: dict[str, Any]) -> str:
    rho = proposal["loo_spearman"]
    return (f"Model: {proposal['model']}, alpha {proposal['ridge_alpha']:g}, fitted on {proposal['fitted']} proxy "
            f"trials' {proposal['metric']} ({proposal['mode']}imised); held-out fit: leave-one-out Spearman "
            f"{'n/a (constant scores)' if rho is None else f'{rho:.3f}'}. Predicted {proposal['metric']}: proposed "
            f"{proposal['predicted_proposed']:.3f}, EPS {proposal['predicted_eps']:.3f}. Constraints: "
            + ", ".join(f"{key} {value}" for key, value in proposal["constraints"].items()) + ".")
