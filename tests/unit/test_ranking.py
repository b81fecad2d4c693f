"""The ranking rule: one sort key for the leaderboard and the reports (mockex/ranking.py), a
setting the engine logs and snapshots, and the gateway's check of SetRules' `ranking`."""

from __future__ import annotations

import grpc
import pytest

from engine_svc.codec import event_to_proto, settings_from_proto, settings_to_proto
from engine_svc.engine import MatchingEngine
from engine_svc.rules import RULES_VERSION, ExchangeSettings
from engine_svc.servicer import CommandHandler
from exchange.internal.v1 import engine_pb2
from exchange.v1 import admin_pb2, types_pb2
from gateway_svc.validation import RequestError, changed_settings, rules_of
from mockex.ranking import METRICS, metric_in_force, rank_key

# (user id, P&L, sharpe)
FIELD = [("dave", 50.0, 0.9), ("alice", 120.0, 0.4), ("carol", 50.0, 0.9), ("bob", 120.0, 1.5)]


def ranked(metric: int) -> list[str]:
    key = {user: rank_key(metric, user, pnl, sharpe) for user, pnl, sharpe in FIELD}
    return sorted(key, key=key.__getitem__)


def test_pnl_ranks_by_pnl_then_user_id():
    assert ranked(types_pb2.PNL) == ["alice", "bob", "carol", "dave"]


def test_an_unspecified_ranking_is_pnl():
    assert ranked(types_pb2.RANKING_METRIC_UNSPECIFIED) == ranked(types_pb2.PNL)
    assert metric_in_force(types_pb2.RANKING_METRIC_UNSPECIFIED) == types_pb2.PNL


def test_sharpe_ranks_by_sharpe_then_pnl_then_user_id():
    assert ranked(types_pb2.SHARPE) == ["bob", "carol", "dave", "alice"]


def test_the_metric_names_are_the_scenario_and_command_line_words():
    assert METRICS == {"pnl": types_pb2.PNL, "sharpe": types_pb2.SHARPE}


def test_the_ranking_is_logged_with_the_settings_and_kept_by_a_snapshot():
    handler = CommandHandler(MatchingEngine())
    settings = ExchangeSettings(RULES_VERSION, short_limit=3, ranking=types_pb2.SHARPE)
    configure = engine_pb2.ConfigureExchangeCommand(settings=settings_to_proto(settings))

    [changed] = handler.apply(
        engine_pb2.EngineCommand(timestamp_ns=1, configure_exchange=configure)
    )

    message = event_to_proto(changed).settings_changed
    assert message.settings.ranking == types_pb2.SHARPE
    assert message.previous.ranking == types_pb2.RANKING_METRIC_UNSPECIFIED
    assert settings_from_proto(message.settings) == settings
    restored = CommandHandler.restore(
        engine_pb2.EngineSnapshot.FromString(handler.snapshot().SerializeToString())
    )
    assert restored.engine.settings == settings


def test_set_rules_changes_the_ranking_and_keeps_the_other_rules():
    current = engine_pb2.ExchangeSettings(rules_version=RULES_VERSION, short_limit=4)

    settings = changed_settings(current, admin_pb2.SetRulesRequest(ranking=types_pb2.SHARPE))

    assert (settings.ranking, settings.short_limit) == (types_pb2.SHARPE, 4)
    assert rules_of(settings).ranking == types_pb2.SHARPE
    assert rules_of(current).ranking == types_pb2.PNL


@pytest.mark.parametrize(
    ("value", "shown"),
    [(types_pb2.RANKING_METRIC_UNSPECIFIED, "RANKING_METRIC_UNSPECIFIED"), (7, "7")],
)
def test_a_ranking_that_is_no_metric_is_refused_naming_the_field_and_the_metrics(value, shown):
    with pytest.raises(RequestError) as refused:
        changed_settings(engine_pb2.ExchangeSettings(), admin_pb2.SetRulesRequest(ranking=value))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.message == f"ranking must be one of PNL, SHARPE, got {shown}"
