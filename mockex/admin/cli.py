"""`python -m mockex.admin`: the organizer's command line (docs/organizer.md).

Each subcommand is one or a few AdminService calls to the gateway over gRPC, with the admin key
as `x-api-key`. What a command found or made goes to stdout (keys, tables, ids), how it is going
to stderr. A call the server refuses prints as one line, its status and its message, and the
exit code is 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import grpc

from exchange.v1 import admin_pb2, admin_pb2_grpc, competition_pb2, competition_pb2_grpc
from mockex import ranking, settings
from mockex.admin import export, teams
from mockex.processes import REPO_ROOT

DEFAULT_TIMEOUT_SECONDS = 30.0
LOAD_TIMEOUT_SECONDS = 90.0
"""Loading a scenario opens every bot's account; the gateway gives the simulator 60 s."""
SCENARIO_STATES = {
    "start": competition_pb2.RUNNING,
    "pause": competition_pb2.PAUSED,
    "resume": competition_pb2.RUNNING,
    "stop": competition_pb2.FINISHED,
}
TEAM_ERRORS = (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.INVALID_ARGUMENT)
"""Refusals of one team of a teams file; any other error stops create-teams."""


def ranking_metric(name: str) -> int:
    """--ranking's value: a metric's name as its RankingMetric number."""
    if name not in ranking.METRICS:
        raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(ranking.METRICS)}")
    return ranking.METRICS[name]


RULES_OPTIONS = {
    "short_limit": ("--short-limit", int, "how far below zero a position may go per symbol"),
    "max_open_orders": ("--max-open-orders", int, "open orders per participant (0: no limit)"),
    "position_limit": ("--position-limit", int, "largest position per symbol, long or short"),
    "maker_fee_bps": ("--maker-fee-bps", float, "fee of the resting side, basis points"),
    "taker_fee_bps": ("--taker-fee-bps", float, "fee of the incoming side, basis points"),
    "mark_max_spread_ticks": ("--mark-max-spread-ticks", int, "widest book marked at its mid"),
    "message_rate_per_second": ("--message-rate", int, "requests per second per API key"),
    "ranking": ("--ranking", ranking_metric, "what the leaderboard and the reports rank by"),
}

EPILOG = """\
The admin key: --admin-key, else MOCKEX_ADMIN_KEY, else the key `make run` keeps in
$MOCKEX_DATA_DIR/admin-key (var/admin-key). The gateway: --target, else 127.0.0.1 at
MOCKEX_GRPC_PORT (50051).

examples:
  python -m mockex.admin users
  python -m mockex.admin create-teams teams.csv --keys-file keys.csv
  python -m mockex.admin round start 1 --duration 300 --reset
  python -m mockex.admin export results/
See docs/organizer.md for every command and the report's fields.
"""


class AdminClient:
    """The admin's gRPC stubs with the key and a deadline on every call."""

    def __init__(self, channel: grpc.Channel, admin_key: str, timeout: float) -> None:
        self.admin = admin_pb2_grpc.AdminServiceStub(channel)
        self.competition = competition_pb2_grpc.CompetitionServiceStub(channel)
        self.metadata = (("x-api-key", admin_key),)
        self.timeout = timeout

    def call(self, method: str, request, timeout: float | None = None):
        stub = getattr(self.admin, method, None) or getattr(self.competition, method)
        return stub(request, metadata=self.metadata, timeout=timeout or self.timeout)


class Output:
    """stdout for results, stderr for progress and explanations."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err

    def result(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def note(self, line: str) -> None:
        print(line, file=self.err, flush=True)


class CommandError(Exception):
    """A command that cannot go on, in the organizer's words (exit code 1)."""


Command = Callable[[AdminClient, argparse.Namespace, Output], int]


def money(value: float) -> str:
    """Cash to at most 4 decimals (a cash unit), at least 2."""
    text = f"{value:.4f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> list[str]:
    """Aligned columns; the `numeric` ones to the right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(cell).rjust(width) if index in numeric else str(cell).ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), *(line(row) for row in rows)]


# ---- the commands ------------------------------------------------------------------------------


def list_users(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    answer = client.call("ListUsers", admin_pb2.ListUsersRequest())
    rows = [
        (
            user.user_id,
            "ADMIN" if user.admin else admin_pb2.Role.Name(user.role or admin_pb2.PARTICIPANT),
            "disabled" if user.disabled else "active",
            money(user.cash),
            money(user.equity),
            money(user.pnl),
        )
        for user in answer.users
    ]
    headers = ("user_id", "role", "state", "cash", "equity", "pnl")
    for line in table(headers, rows, numeric={3, 4, 5}):
        output.result(line)
    return 0


def create_teams(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    source = Path(args.file)
    try:
        text = source.read_text()
    except OSError as error:
        raise CommandError(f"cannot read the teams file {source}: {error.strerror}") from None
    parsed = teams.parse_teams(text, str(source))
    keys_path = Path(args.keys_file or f"keys-{time.strftime('%Y%m%d-%H%M%S')}.csv")
    try:
        keys = teams.open_keys_file(keys_path)
    except FileExistsError:
        raise CommandError(
            f"the keys file {keys_path} exists already; keys are never overwritten: "
            "name another with --keys-file"
        ) from None
    output.note(f"creating {len(parsed)} teams; their keys go to {keys_path} (mode 0600)")
    created, existing, refused = 0, 0, 0
    with keys:
        output.result(",".join(teams.KEYS_HEADER))
        for number, team in enumerate(parsed, start=1):
            progress = f"[{number}/{len(parsed)}] {team.user_id}"
            request = admin_pb2.CreateUserRequest(user_id=team.user_id)
            if team.cash is not None:
                request.cash = team.cash
            try:
                answer = client.call("CreateUser", request)
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.ALREADY_EXISTS:
                    existing += 1
                    output.note(f"{progress}: exists already, skipped (its key is unchanged)")
                    continue
                if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    refused += 1
                    output.note(f"{progress} (line {team.line}): refused: {error.details()}")
                    continue
                output.note(
                    f"{progress}: stopped ({created} created so far, keys in {keys_path}); "
                    f"{team.user_id} may exist without a known key (rotate-key gives one); "
                    "running the same file again skips the teams that exist"
                )
                raise
            teams.write_key(keys, answer.user_id, answer.api_key)
            output.result(f"{answer.user_id},{answer.api_key}")
            created += 1
            output.note(f"{progress}: created")
    output.note(
        f"{created} created, {existing} existed already, {refused} refused; keys in {keys_path}"
    )
    return 1 if refused else 0


def rotate_key(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    answer = client.call("RotateKey", admin_pb2.RotateKeyRequest(user_id=args.user))
    output.note(f"new API key of {answer.user_id} (shown once; the old one no longer works):")
    output.result(answer.api_key)
    return 0


def revoke_key(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    client.call("RevokeKey", admin_pb2.RevokeKeyRequest(user_id=args.user))
    output.result(f"{args.user}: key revoked (rotate-key gives a new one)")
    return 0


def disable(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    answer = client.call("DisableUser", admin_pb2.DisableUserRequest(user_id=args.user))
    output.result(
        f"{answer.user_id} disabled: {answer.cancelled_orders} open orders cancelled, "
        "new orders are rejected (USER_DISABLED) until `enable`"
    )
    return 0


def enable(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    client.call("EnableUser", admin_pb2.EnableUserRequest(user_id=args.user))
    output.result(f"{args.user} enabled")
    return 0


def adjust_cash(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    answer = client.call(
        "AdjustCash", admin_pb2.AdjustCashRequest(user_id=args.user, amount=args.amount)
    )
    output.result(
        f"{answer.user_id}: cash {money(answer.cash)}, "
        f"starting value {money(answer.starting_value)}"
    )
    return 0


def post_news(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    symbols = [symbol.strip() for symbol in args.symbols.split(",") if symbol.strip()]
    request = admin_pb2.PostNewsRequest(
        headline=args.headline,
        symbols=symbols,
        price_change=args.price_change,
        volatility_multiplier=args.volatility_multiplier,
        duration_seconds=args.duration,
        news_id=args.news_id,
    )
    answer = client.call("PostNews", request)
    output.result(f"news {answer.news_id} published")
    return 0


def list_scenarios(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    answer = client.call("ListScenarios", admin_pb2.ListScenariosRequest())
    rows = [
        (
            scenario.name,
            str(scenario.rounds),
            f"{scenario.duration_seconds / 60:.0f} min",
            ",".join(scenario.symbols),
            scenario.description,
        )
        for scenario in answer.scenarios
    ]
    headers = ("name", "rounds", "length", "symbols", "description")
    for line in table(headers, rows, numeric={1, 2}):
        output.result(line)
    return 0


def simulator_status(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    answer = client.call("GetSimulatorStatus", admin_pb2.GetSimulatorStatusRequest())
    if not answer.scenario:
        output.result(f"no scenario loaded ({answer.state})")
        return 0
    output.result(
        f"{answer.scenario} (seed {answer.seed}) {answer.state}, "
        f"scenario clock {answer.scenario_seconds:.0f} s"
    )
    rows = [
        (
            kind.kind,
            str(kind.bots),
            str(kind.orders),
            str(kind.cancels),
            f"{kind.orders_per_second:.1f}",
        )
        for kind in answer.kinds
    ]
    for line in table(
        ("bots", "count", "orders", "cancels", "orders/s"), rows, numeric={1, 2, 3, 4}
    ):
        output.result(line)
    fair = ", ".join(
        f"{symbol} {value:.2f}" for symbol, value in sorted(answer.fair_values.items())
    )
    output.result(f"fair values: {fair or '-'}")
    for title, counts in (("refused", answer.rejected), ("skipped", answer.skipped)):
        if counts:
            output.result(f"{title}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


def load_scenario(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    request = admin_pb2.LoadScenarioRequest(name=args.name, seed=args.seed, paused=args.paused)
    answer = client.call("LoadScenario", request, timeout=max(client.timeout, LOAD_TIMEOUT_SECONDS))
    state = "paused (`scenario start` runs it)" if args.paused else "running"
    output.result(
        f"loaded {answer.name} (seed {answer.seed}, digest {answer.digest[:12]}): "
        f"{len(answer.symbols)} symbols ({', '.join(answer.symbols)}), {answer.bots} bots, "
        f"{answer.rounds} rounds; {state}"
    )
    return 0


def set_scenario(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    state = SCENARIO_STATES[args.action]
    client.call("SetScenario", admin_pb2.SetScenarioRequest(state=state))
    output.result(f"scenario {competition_pb2.EventState.Name(state)}")
    return 0


def start_round(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    request = admin_pb2.StartRoundRequest(
        round=args.number, duration_seconds=args.duration, reset_accounts=args.reset
    )
    client.call("StartRound", request)
    reset = ", every participant back to their starting cash and positions" if args.reset else ""
    output.result(f"round {args.number} started for {args.duration:g} s{reset}")
    return 0


def end_round(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    request = admin_pb2.EndRoundRequest(round=args.number, next_round_in_seconds=args.next_in)
    client.call("EndRound", request)
    output.result(f"round {args.number} ended")
    return 0


def reset_round(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    """Only the round in progress: a StartRound of a later number would start a new round."""
    schedule = client.call("GetSchedule", competition_pb2.GetScheduleRequest())
    if schedule.round != args.number or not schedule.HasField("round_ends_at"):
        now = f"round {schedule.round} is in progress"
        if not schedule.HasField("round_ends_at"):
            now = "no round is in progress"
        raise CommandError(f"round {args.number} is not in progress ({now}); nothing was reset")
    request = admin_pb2.StartRoundRequest(
        round=args.number, duration_seconds=args.duration, reset_accounts=True, restart=True
    )
    client.call("StartRound", request)
    output.result(
        f"round {args.number} started again for {args.duration:g} s, every participant back to "
        "their starting cash and positions"
    )
    return 0


def rules(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    changes = {
        name: getattr(args, name) for name in RULES_OPTIONS if getattr(args, name) is not None
    }
    if changes:
        answer = client.call("SetRules", admin_pb2.SetRulesRequest(**changes))
    else:
        answer = client.call("GetRules", admin_pb2.GetRulesRequest())
    for field in answer.rules.DESCRIPTOR.fields:
        value = getattr(answer.rules, field.name)
        if field.enum_type is not None:
            value = field.enum_type.values_by_number[value].name.lower()
        output.result(
            f"{field.name}: {value:g}" if isinstance(value, float) else f"{field.name}: {value}"
        )
    return 0


def export_results(client: AdminClient, args: argparse.Namespace, output: Output) -> int:
    results = client.call("GetResults", admin_pb2.GetResultsRequest())
    written = export.write_results(Path(args.directory), results)
    output.note(
        f"{len(results.reports)} participants, rounds {list(results.rounds) or 'none'}: "
        f"{len(written)} files"
    )
    for path in written:
        output.result(str(path))
    return 0


# ---- the parser ----------------------------------------------------------------------------------


def default_admin_key() -> str:
    """MOCKEX_ADMIN_KEY, else the key `make run` generated (never made here)."""
    if os.environ.get("MOCKEX_ADMIN_KEY"):
        return os.environ["MOCKEX_ADMIN_KEY"]
    data_dir = os.environ.get("MOCKEX_DATA_DIR") or REPO_ROOT / "var"
    path = Path(data_dir) / "admin-key"
    return path.read_text().strip() if path.is_file() else ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mockex.admin",
        description="Organizer tools for a Mockex event: teams, keys, the kill switch, cash, "
        "news, scenarios, rounds, rules and the results.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--target", help="the gateway's gRPC address (default 127.0.0.1:50051)")
    parser.add_argument("--admin-key", help="an admin API key (default: see below)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="seconds each call may take (default %(default)g)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Command, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    command("users", list_users, "every account: role, state, cash, equity and event P&L")

    teams_command = command(
        "create-teams",
        create_teams,
        "create teams from a CSV with the header user_id[,cash] (no cash: the scenario's "
        "terms); each key is printed once and written to a new file only you can read",
    )
    teams_command.add_argument("file", help="the teams CSV")
    teams_command.add_argument(
        "--keys-file", help="where the keys go (default keys-<timestamp>.csv; never overwritten)"
    )

    for name, run, help in (
        ("rotate-key", rotate_key, "a new API key for USER (printed once); the old one stops"),
        ("revoke-key", revoke_key, "USER's key stops working; no new one"),
        ("disable", disable, "the kill switch: cancel all USER's open orders, reject new ones"),
        ("enable", enable, "let a disabled USER trade again"),
    ):
        command(name, run, help).add_argument("user", metavar="USER")

    cash = command(
        "adjust-cash",
        adjust_cash,
        "give USER cash (a negative AMOUNT takes it); the starting value moves too, so it is "
        "not P&L",
    )
    cash.add_argument("user", metavar="USER")
    cash.add_argument("amount", metavar="AMOUNT", type=float)

    news = command("news", post_news, "publish a headline to every participant")
    news.add_argument("headline")
    news.add_argument("--symbols", default="", help="comma-separated, e.g. ACME,GLOBX")
    news.add_argument(
        "--price-change",
        type=float,
        default=0.0,
        help="the simulator's relative move of the symbols' fair value, e.g. -0.05 (never shown)",
    )
    news.add_argument(
        "--volatility-multiplier",
        type=float,
        default=0.0,
        help="the simulator's volatility of the symbols times this, for --duration seconds",
    )
    news.add_argument("--duration", type=float, default=0.0, help="seconds the volatility lasts")
    news.add_argument("--news-id", default="", help="your id: posting it twice is refused")

    command("scenarios", list_scenarios, "the simulator's scenarios")
    command(
        "simulator",
        simulator_status,
        "the simulator now: scenario, state, clock, bots by kind, fair values (never shown to "
        "participants)",
    )
    load = command(
        "load-scenario",
        load_scenario,
        "load scenario NAME into the simulator (a new event: round 1, fresh scores) and run it",
    )
    load.add_argument("name", metavar="NAME")
    load.add_argument("--seed", type=int, default=0, help="same seed, same market (default 0)")
    load.add_argument("--paused", action="store_true", help="load only; `scenario start` runs it")
    scenario = command("scenario", set_scenario, "start, pause, resume or stop the scenario")
    scenario.add_argument("action", choices=sorted(SCENARIO_STATES))

    round_help = "start, end or reset a round"
    round_command = commands.add_parser("round", help=round_help, description=round_help)
    rounds = round_command.add_subparsers(dest="round_action", required=True, metavar="ACTION")
    start = rounds.add_parser("start", help="start round N", description="start round N")
    start.set_defaults(run=start_round)
    start.add_argument("number", metavar="N", type=int)
    start.add_argument("--duration", type=float, required=True, help="seconds the round runs")
    start.add_argument(
        "--reset",
        action="store_true",
        help="participants back to their starting cash and positions",
    )
    end = rounds.add_parser("end", help="end round N", description="end round N")
    end.set_defaults(run=end_round)
    end.add_argument("number", metavar="N", type=int)
    end.add_argument(
        "--next-in", type=float, default=0.0, help="seconds until the next round (the countdown)"
    )
    reset = rounds.add_parser(
        "reset",
        help="start round N, the one in progress, again with every participant reset",
        description="start round N, the one in progress, again with every participant reset",
    )
    reset.set_defaults(run=reset_round)
    reset.add_argument("number", metavar="N", type=int)
    reset.add_argument("--duration", type=float, required=True, help="seconds the round runs")

    rules_command = command(
        "rules", rules, "show the rules, or change the ones given (the others stay)"
    )
    for name, (flag, kind, help) in RULES_OPTIONS.items():
        metavar = "N" if kind is int else "BPS" if name.endswith("bps") else "X"
        if kind is ranking_metric:
            metavar = "|".join(ranking.METRICS)
        rules_command.add_argument(flag, dest=name, type=kind, metavar=metavar, help=help)

    export_command = command(
        "export",
        export_results,
        "write DIR/results.json and .csv, and DIR/reports/<user>.json and .csv per participant",
    )
    export_command.add_argument("directory", metavar="DIR")
    return parser


def main(
    argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    args = build_parser().parse_args(argv)
    output = Output(out, err)
    admin_key = args.admin_key or default_admin_key()
    if not admin_key:
        output.note("error: no admin key: pass --admin-key or set MOCKEX_ADMIN_KEY")
        return 1
    target = args.target or settings.local_address("gateway")
    with grpc.insecure_channel(target) as channel:
        client = AdminClient(channel, admin_key, args.timeout)
        try:
            return args.run(client, args, output)
        except grpc.RpcError as error:
            output.note(f"error: {error.code().name}: {error.details()}")
        except (CommandError, teams.TeamsFileError) as error:
            output.note(f"error: {error}")
    return 1
