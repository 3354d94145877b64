"""`plantfed aggregate`: aggregate one round from the model store (the aggregation Job's entry point).

The operator writes this command into the Job (`plantfed.hub.jobs.aggregation_job`); `plantfed simulate`
parses exactly that command with this parser and calls `execute`, so both run one code path from the
FederatedRound's strategy to the published version. Strategy flags come from the one vocabulary
(`plantfed.contract.strategies`).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plantfed.contract import strategies

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--round", required=True)
    p.add_argument("--plants", help="comma-separated plants to aggregate (default: every committed update)")
    p.add_argument("--local-pattern", action="append", help="parameter-name glob never aggregated (repeatable)")
    p.add_argument("--task", help="the model's task; its personal (plant-local) parameters are never aggregated")
    p.add_argument("--result", type=Path, help="write the outcome as JSON here")
    p.add_argument("--dp-delta", type=float, default=1e-5, help="δ at which each aggregated plant's ε is reported")
    strategies.add_arguments(p)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="plantfed aggregate", description=__doc__.splitlines()[0])
    add_arguments(p)
    return p


def execute(args: argparse.Namespace) -> dict[str, Any]:
    """Aggregate as the command line says; returns what the Job reports (also written to --result)."""
    from plantfed.engine.aggregation import StrategyConfig
    from plantfed.engine.privacy import PrivacyLedger, epsilon_for
    from plantfed.engine.round_aggregation import aggregate_round
    from plantfed.engine.store import ModelStore

    store = ModelStore(args.store)
    for path in store.sweep_leftovers():  # what an earlier, killed run of this Job (or another) left behind
        log.info("removed leftover %s", path)
    patterns = tuple(args.local_pattern or ())
    if args.task:
        from plantfed.tasks.sdk import load_task

        patterns += tuple(load_task(args.task).local_parameter_patterns())
    outcome = aggregate_round(
        store,
        args.round,
        StrategyConfig.from_arguments(args),
        plants=args.plants.split(",") if args.plants else None,
        local_patterns=patterns,
    )
    entries = PrivacyLedger(store, outcome.version.model).entries()
    histories = {p: [e.release for e in entries.get(p, [])] for p in outcome.plants}
    result: dict[str, Any] = {
        "round": args.round,
        "model": outcome.version.model,
        "version": outcome.version.version,
        "plants": outcome.plants,
        "reused": outcome.reused,
        "seconds": outcome.seconds,
        "metrics": outcome.version.metrics,
        # ε each aggregated plant has spent in this lineage so far (plants with no DP release are left out).
        "dp_delta": args.dp_delta,
        "epsilon": {p: epsilon_for(h, args.dp_delta) for p, h in histories.items() if h},
    }
    if outcome.result is not None:
        result["stats"] = [s.model_dump(mode="json") for s in outcome.result.plants]
        result["peak_bytes"] = outcome.result.peak_bytes
    if args.result:
        args.result.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.result.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, sort_keys=True))
        tmp.replace(args.result)
    return result


def run(args: argparse.Namespace) -> int:
    print(json.dumps(execute(args), sort_keys=True))
    return 0


def main(argv: Sequence[str]) -> dict[str, Any]:
    """Parse and execute an argument list (a Job's command without `plantfed aggregate`)."""
    return execute(parser().parse_args(list(argv)))
