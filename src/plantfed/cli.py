"""The `plantfed` command: one subcommand per process, so every pod spec calls it with an explicit command.

Heavy imports (torch, grpc, kopf) happen inside each subcommand, so `plantfed --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plantfed.engine.aggregation import StrategyConfig
    from plantfed.plant.runtime import PlantRuntime

CODECS = ("none", "fp16", "int8")
STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedyogi", "fedavgm", "trimmed_mean", "median")


def _add_plant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exchange", required=True, help="host:port of the hub's model exchange")
    p.add_argument("--plant", required=True, help="this plant's identity (must match its token)")
    p.add_argument("--token-file", type=Path, required=True, help="file holding this plant's bearer token")
    p.add_argument("--ca-file", type=Path, help="CA bundle to verify the exchange's TLS certificate (enables TLS)")
    p.add_argument(
        "--client-cert", type=Path, help="PEM client certificate naming this plant, for mutual TLS (tls.crt)"
    )
    p.add_argument("--client-key", type=Path, help="PEM private key of --client-cert (tls.key)")
    p.add_argument("--task", default="bearing", help="built-in task name or 'module:Class'")
    p.add_argument("--data", type=Path, help="the plant's data directory (default: the task's synthetic data)")
    p.add_argument("--plant-index", type=int, default=0, help="which partition of a shared or synthetic source")
    p.add_argument("--num-plants", type=int, default=1)
    p.add_argument("--state-dir", type=Path, required=True, help="plant-local state: model cache, personal layers")
    p.add_argument(
        "--data-option", action="append", default=[], metavar="KEY=VALUE", help="task-specific data option (repeatable)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", type=Path, help="write the result as JSON here (also printed to stdout)")


def _add_training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam", "adamw"))
    p.add_argument("--fedprox-mu", type=float, default=0.0, help="FedProx proximal weight (0 = plain local SGD)")
    p.add_argument("--codec", default="none", choices=CODECS, help="update compression on the wire")
    p.add_argument(
        "--clip-norm",
        type=float,
        default=0.0,
        help="L2 bound of the update (--dp-mode local) or of each record's gradient (sample); 0 = off",
    )
    p.add_argument("--noise-multiplier", type=float, default=0.0, help="Gaussian noise std as a multiple of clip-norm")
    p.add_argument(
        "--dp-mode",
        default="local",
        choices=("local", "sample"),
        help="local: clip and noise the whole update once; sample: DP-SGD (opacus), per-record clipping",
    )
    p.add_argument(
        "--label-skew-alpha",
        type=float,
        default=0.0,
        help="benchmarks: Dirichlet label skew of the train split (0 = off)",
    )


def _add_strategy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", default="fedavg", choices=STRATEGIES)
    p.add_argument("--server-lr", type=float, default=None, help="server learning rate (FedAdam/FedYogi/FedAvgM)")
    p.add_argument("--server-momentum", type=float, default=None, help="FedAvgM momentum")
    p.add_argument("--beta1", type=float, default=None, help="FedAdam/FedYogi first-moment decay")
    p.add_argument("--beta2", type=float, default=None, help="FedAdam/FedYogi second-moment decay")
    p.add_argument("--tau", type=float, default=None, help="FedAdam/FedYogi adaptivity floor")
    p.add_argument("--trim-fraction", type=float, default=None, help="trimmed mean: fraction cut at each end")
    p.add_argument(
        "--norm-bound", type=float, default=None, help="clip every update to this L2 norm before aggregating"
    )
    p.add_argument(
        "--central-noise-multiplier",
        type=float,
        default=None,
        help="central DP: add N(0, (σ·norm-bound·max weight)²) to the aggregate (needs --norm-bound)",
    )


def strategy_from_args(args: argparse.Namespace) -> StrategyConfig:
    from plantfed.engine.aggregation import StrategyConfig

    fields: dict[str, Any] = {"name": args.strategy}
    for arg, key in (
        ("server_lr", "server_lr"),
        ("server_momentum", "momentum"),
        ("trim_fraction", "trim_fraction"),
        ("norm_bound", "norm_bound"),
        ("beta1", "beta1"),
        ("beta2", "beta2"),
        ("tau", "tau"),
        ("central_noise_multiplier", "central_noise_multiplier"),
    ):
        value = getattr(args, arg)
        if value is not None:
            fields[key] = value
    return StrategyConfig(**fields)


def parse_options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--data-option expects KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def _plant_runtime(args: argparse.Namespace) -> PlantRuntime:
    from plantfed.exchange.client import ExchangeClient
    from plantfed.exchange.transport import ClientTLS
    from plantfed.plant.runtime import PlantRuntime
    from plantfed.tasks.sdk import DataSpec, load_task

    token = args.token_file.read_text().strip()
    try:
        tls = ClientTLS.from_files(args.ca_file, args.client_cert, args.client_key)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    client = ExchangeClient(args.exchange, token, **tls.channel_kwargs())
    data = DataSpec(
        plant=args.plant,
        path=args.data,
        plant_index=args.plant_index,
        num_plants=args.num_plants,
        seed=args.seed,
        options=parse_options(args.data_option),
    )
    return PlantRuntime(args.plant, load_task(args.task), data, args.state_dir, client)


def _emit(result: dict, report: Path | None) -> None:
    text = json.dumps(result, sort_keys=True)
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        tmp = report.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(report)
    print(text)


def cmd_train(args: argparse.Namespace) -> int:
    from plantfed.contract.records import Codec, DPMode
    from plantfed.plant.runtime import ParticipationConfig
    from plantfed.plant.training import LocalTrainingConfig

    runtime = _plant_runtime(args)
    cfg = ParticipationConfig(
        training=LocalTrainingConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            optimizer=args.optimizer,
            fedprox_mu=args.fedprox_mu,
        ),
        codec=Codec(args.codec),
        clip_norm=args.clip_norm,
        noise_multiplier=args.noise_multiplier,
        dp_mode=DPMode(args.dp_mode),
        variant=args.variant,
        seed=args.seed,
        device=args.device,
        label_skew_alpha=args.label_skew_alpha,
    )
    report = runtime.participate(args.round, cfg)
    _emit(json.loads(report.to_json()), args.report)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if (args.round is None) == (args.model is None):
        raise SystemExit("plantfed evaluate: pass either --round (score and report its candidate) or --model")
    runtime = _plant_runtime(args)
    if args.round is not None:
        kept = runtime.evaluate_candidate(args.round, args.variant, args.device)
        _emit(kept.model_dump(), args.report)
    else:
        _emit(runtime.evaluate_version(args.model, args.version, args.variant), args.report)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from plantfed.contract.records import Codec, DPMode
    from plantfed.sim.simulate import Simulation, SimulationConfig

    cfg = SimulationConfig(
        plants=args.plants,
        holdout=args.holdout,
        baselines=args.baselines,
        rounds=args.rounds,
        task=args.task,
        data=args.data,
        out=args.out,
        strategy=strategy_from_args(args),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        optimizer=args.optimizer,
        fedprox_mu=args.fedprox_mu,
        codec=Codec(args.codec),
        clip_norm=args.clip_norm,
        noise_multiplier=args.noise_multiplier,
        dp_mode=DPMode(args.dp_mode),
        variants=tuple(args.variants.split(",")) if args.variants else (),
        seed=args.seed,
        parallel=args.parallel,
        metrics_port=args.metrics_port,
        metrics_linger_s=args.metrics_linger,
        data_options=parse_options(args.data_option),
        label_skew_alpha=args.label_skew_alpha,
        dp_delta=args.dp_delta,
        epsilon_budget=args.epsilon_budget,
    )
    Simulation(cfg).run()
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    from plantfed.engine.privacy import PrivacyLedger, epsilon_for
    from plantfed.engine.round_aggregation import aggregate_round
    from plantfed.engine.store import ModelStore

    store = ModelStore(args.store)
    patterns = tuple(args.local_pattern or ())
    if args.task:
        from plantfed.tasks.sdk import load_task

        patterns += tuple(load_task(args.task).local_parameter_patterns())
    outcome = aggregate_round(
        store,
        args.round,
        strategy_from_args(args),
        plants=args.plants.split(",") if args.plants else None,
        local_patterns=patterns,
    )
    entries = PrivacyLedger(store, outcome.version.model).entries()
    histories = {p: [e.release for e in entries.get(p, [])] for p in outcome.plants}
    result = {
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
    _emit(result, args.result)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from plantfed.sim import report

    if (args.run_dir is None) == (args.prometheus is None):
        raise SystemExit("plantfed report: give either a run directory or --prometheus URL (not both)")
    if args.run_dir is not None:
        print(report.render_run(args.run_dir, args.out))
        return 0
    if not args.model:
        raise SystemExit("plantfed report: --prometheus needs --model (the FederatedModel / lineage name)")
    try:
        since = report.parse_duration(args.since)
        step = report.parse_duration(args.step) if args.step else None
    except ValueError as exc:
        raise SystemExit(f"plantfed report: {exc}") from None
    out = args.out or Path("convergence.png")
    src = report.PrometheusSource(args.prometheus, args.model, args.namespace)
    try:
        curves = report.render_prometheus(src, out, since_s=since, step_s=step)
    except report.PrometheusError as exc:
        raise SystemExit(f"plantfed report: {exc}") from None
    print(f"{out} (rounds {curves.rounds[0]}-{curves.rounds[-1]})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plantfed", description="Federated training across plants.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="run a whole federation on this machine (plants as local processes)")
    p.add_argument("--plants", type=int, default=3)
    p.add_argument("--holdout", type=int, default=0, help="the last K plants never train; they only score models")
    p.add_argument("--baselines", action="store_true", help="also train centralised and siloed models (same budget)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--task", default="bearing")
    p.add_argument("--data", type=Path, help="data directory (e.g. ../shared/data/cwru); default: synthetic")
    p.add_argument(
        "--data-option", action="append", default=[], metavar="KEY=VALUE", help="task-specific data option (repeatable)"
    )
    p.add_argument("--out", type=Path, default=Path("runs/simulate"))
    p.add_argument("--variants", help="comma-separated model variants assigned to plants in turn, e.g. full,light")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parallel", type=int, default=0, help="plants training at once (default: one per core)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    p.add_argument(
        "--metrics-linger",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="with --metrics-port: keep serving this long after the run, for a last scrape",
    )
    p.add_argument("--dp-delta", type=float, default=1e-5, help="δ at which each plant's ε is reported")
    p.add_argument("--epsilon-budget", type=float, help="a plant whose next round would exceed this ε sits it out")
    _add_training_args(p)
    _add_strategy_args(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("train", help="take part in one round as a plant (what a training pod runs)")
    _add_plant_args(p)
    _add_training_args(p)
    p.add_argument("--round", required=True)
    p.add_argument("--variant", default="full")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a model on this plant's data; only numbers leave the plant")
    _add_plant_args(p)
    p.add_argument(
        "--round",
        help="score the round's aggregated candidate on the validation split and report it "
        "to the hub (what an evaluation pod runs)",
    )
    p.add_argument("--model", help="score this model's --version (default: promoted) on the test split, locally")
    p.add_argument("--version", type=int, help="with --model; default: the latest promoted")
    p.add_argument("--variant", default="full")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("aggregate", help="aggregate one round from the model store (the aggregation Job)")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--round", required=True)
    p.add_argument("--plants", help="comma-separated plants to aggregate (default: every committed update)")
    p.add_argument("--local-pattern", action="append", help="parameter-name glob never aggregated (repeatable)")
    p.add_argument("--task", help="the model's task; its personal (plant-local) parameters are never aggregated")
    p.add_argument("--result", type=Path, help="write the outcome as JSON here")
    p.add_argument("--dp-delta", type=float, default=1e-5, help="δ at which each aggregated plant's ε is reported")
    _add_strategy_args(p)
    p.set_defaults(func=cmd_aggregate)

    from plantfed.exchange import cli as exchange_cli

    p = sub.add_parser("exchange", help="serve the gRPC model exchange (hub)")
    exchange_cli.add_arguments(p)
    p.set_defaults(func=exchange_cli.run)

    from plantfed.plant.agent import cli as agent_cli

    p = sub.add_parser("agent", help="run a plant's agent: heartbeat, training Jobs for assigned rounds, model cache")
    agent_cli.add_arguments(p)
    p.set_defaults(func=agent_cli.run)

    p = sub.add_parser("report", help="render convergence plots (PNG) from a run directory or from Prometheus")
    p.add_argument("run_dir", type=Path, nargs="?", help="a `plantfed simulate` output directory (report.json)")
    p.add_argument("--out", type=Path, help="PNG to write (default: RUN_DIR/convergence.png, or ./convergence.png)")
    p.add_argument("--prometheus", metavar="URL", help="read plantfed's metrics from this Prometheus instead")
    p.add_argument("--model", help="with --prometheus: the model lineage to plot")
    p.add_argument("--namespace", help="with --prometheus: only series with this namespace label")
    p.add_argument("--since", default="6h", help="with --prometheus: how far back to look (default 6h)")
    p.add_argument("--step", help="with --prometheus: query resolution (default: the window / 10000, at least 1s)")
    p.set_defaults(func=cmd_report)

    from plantfed.hub import healthcheck, init_model
    from plantfed.hub import run as hub_operator

    p = sub.add_parser("operator", help="run the hub operator (kopf): rounds, campaigns, participants")
    hub_operator.add_arguments(p)
    p.set_defaults(func=hub_operator.run)

    p = sub.add_parser("init-model", help="write a lineage's first version into the model store (init Job)")
    init_model.add_arguments(p)
    p.set_defaults(func=init_model.run)

    p = sub.add_parser("healthcheck", help="check that the model exchange is serving (exit 0/1)")
    healthcheck.add_arguments(p)
    p.set_defaults(func=healthcheck.run)

    p = sub.add_parser("crds", help="write the CustomResourceDefinitions generated from the API models")
    p.add_argument("--out", type=Path, default=Path("crds"))
    p.add_argument("--check", action="store_true", help="fail if the files on disk differ")
    p.set_defaults(func=cmd_crds)

    p = sub.add_parser(
        "validate", help="check manifests as `kubectl apply` and the API server would, without a cluster (exit 0/1)"
    )
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="a manifest, a directory (its *.yaml, *.yml and *.json files) or - for stdin; repeatable",
    )
    p.set_defaults(func=cmd_validate)
    return parser


def cmd_crds(args: argparse.Namespace) -> int:
    from plantfed.contract.api import crdgen

    return crdgen.main(["--out", str(args.out)] + (["--check"] if args.check else []))


def cmd_validate(args: argparse.Namespace) -> int:
    """One line per object: `valid` on stdout, or the API server's refusal on stderr (as kubectl would print it)."""
    from plantfed.contract.api.common import GROUP
    from plantfed.contract.api.validation import ManifestError, validate_documents

    failed = False
    for given in args.filename:
        path = Path(given)
        if given != "-" and not path.exists():
            print(f'error: the path "{given}" does not exist', file=sys.stderr)
            failed = True
            continue
        files = (
            sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json")) if path.is_dir() else [given]
        )
        for source in files:
            for number, result in validate_documents(source):
                if isinstance(result, ManifestError):
                    print(f"{source} (object {number}): {result}", file=sys.stderr)
                    failed = True
                else:
                    print(f"{source}: {result.kind.lower()}.{GROUP}/{result.metadata.name} valid")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
