"""How participants are ranked: one key for the leaderboard (gateway) and the reports (store),
so the two can never disagree.

The rules' `ranking` (a log record, engine_svc/rules.py) names the metric: P&L over the event,
or `sharpe`, the mean over the standard deviation of the per-minute P&L changes
(engine_svc/scoring.py). Best first; ties by P&L, then by user id. Drawdown is no metric here:
the smallest drawdown would rank first a participant who never trades.
"""

from __future__ import annotations

from exchange.v1 import types_pb2

METRICS = {"pnl": types_pb2.PNL, "sharpe": types_pb2.SHARPE}
"""The metrics by the names scenario files and the organizer's command line use."""


def metric_in_force(ranking: int) -> int:
    """The metric a rules' ranking means: unspecified (a log from before the rule) is P&L."""
    return ranking or types_pb2.PNL


def metric_name(ranking: int) -> str:
    """PNL or SHARPE, as the API prints it."""
    return types_pb2.RankingMetric.Name(metric_in_force(ranking))


def rank_key(ranking: int, user_id: str, pnl: float, sharpe: float) -> tuple[float, float, str]:
    """Sort key, best first: the ranking's metric, then P&L, then the user id."""
    first = sharpe if metric_in_force(ranking) == types_pb2.SHARPE else pnl
    return (-first, -pnl, user_id)
