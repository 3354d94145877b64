"""The `plantfed` command: one subcommand per process, so every pod spec calls it with an explicit command.

Heavy imports (torch, grpc, kopf) happen inside each subcommand, so `plantfed --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plantfed.plant.runtime import PlantRuntime
    from plantfed.sim.simulate import SimulationConfig

from plantfed.contract import strategies

CODECS = ("none", "fp16", "int8")
MODEL_NAME = "bearing"
"""The FederatedModel `plantfed simulate` writes unless --model-name or a manifest names it."""


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


class _ShowDefaults(argparse.HelpFormatter):
    """Appends `(default: X)` to a flag's help unless its help already says it or it has none (None, off switches)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        unset = action.default is None or action.default is argparse.SUPPRESS or action.default == []
        if "default" in text or unset or action.nargs == 0 or not action.option_strings:  # nargs 0: on/off switches
            return text
        return f"{text} (default: %(default)s)".lstrip()


def _add_label_skew(p: argparse.ArgumentParser) -> argparse.Action:
    return p.add_argument(
        "--label-skew-alpha",
        type=float,
        default=0.0,
        help="benchmarks: Dirichlet label skew of the train split, one dataset shared by every plant (0 = off)",
    )


def _add_training_args(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """The round's local training flags of `plantfed train`; their defaults are also simulate's campaign defaults."""
    return [
        p.add_argument("--epochs", type=int, default=1, help="local epochs per round"),
        p.add_argument("--batch-size", type=int, default=64),
        p.add_argument("--learning-rate", type=float, default=0.01),
        p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam", "adamw")),
        p.add_argument(
            "--sgd-momentum",
            type=float,
            default=0.9,
            help="local SGD momentum (not --momentum, the hub's FedAvgM momentum)",
        ),
        p.add_argument("--fedprox-mu", type=float, default=0.0, help="FedProx proximal weight (0 = plain local SGD)"),
        p.add_argument("--codec", default="none", choices=CODECS, help="update compression on the wire"),
        p.add_argument(
            "--clip-norm",
            type=float,
            default=0.0,
            help="L2 bound of the update (--dp-mode local) or of each record's gradient (sample); 0 = off",
        ),
        p.add_argument(
            "--noise-multiplier", type=float, default=0.0, help="Gaussian noise std as a multiple of clip-norm"
        ),
        p.add_argument(
            "--dp-mode",
            default="local",
            choices=("local", "sample"),
            help="local: clip and noise the whole update once; sample: DP-SGD (opacus), per-record clipping",
        ),
        _add_label_skew(p),
    ]


def training_defaults() -> dict[str, Any]:
    """`plantfed train`'s defaults by flag destination (what simulate's unset campaign flags become)."""
    return {a.dest: a.default for a in _add_training_args(argparse.ArgumentParser(add_help=False))}


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
        runtime_partition=args.label_skew_alpha > 0,
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
            momentum=args.sgd_momentum,
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
    with runtime.client:
        report = runtime.participate(args.round, cfg)
    _emit(json.loads(report.to_json()), args.report)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if (args.round is None) == (args.model is None):
        raise SystemExit("plantfed evaluate: pass either --round (score and report its candidate) or --model")
    runtime = _plant_runtime(args)
    with runtime.client:
        if args.round is not None:
            kept = runtime.evaluate_candidate(args.round, args.variant, args.device)
            _emit(kept.model_dump(), args.report)
        else:
            _emit(runtime.evaluate_version(args.model, args.version, args.variant), args.report)
    return 0


class _CleanSlate:
    """What a fresh `plantfed` process starts a Job with, captured once after imports and restored before each Job.

    A warm plant worker (`plantfed plant-worker`, see `plantfed.sim.workers`) must give the results a fresh
    process gives: the same RNG states (torch's default seed, entropy-seeded `random` and numpy), thread count,
    grad mode, default dtype, environment, working directory and sys.argv. Models, optimizers and clients are
    locals of the Job's command and are collected after it.
    """

    def __init__(self) -> None:
        import torch

        self.torch_rng = torch.get_rng_state()
        self.threads = torch.get_num_threads()
        self.dtype = torch.get_default_dtype()
        self.environ = dict(os.environ)
        self.cwd = os.getcwd()
        self.argv0 = sys.argv[0]

    def restore(self, argv: list[str]) -> None:
        import random

        import numpy
        import torch

        torch.set_rng_state(self.torch_rng)
        torch.set_num_threads(self.threads)
        torch.set_default_dtype(self.dtype)
        torch.set_grad_enabled(True)
        random.seed()
        numpy.random.seed()
        os.environ.clear()
        os.environ.update(self.environ)
        os.chdir(self.cwd)
        sys.argv = [self.argv0, *argv]


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter would exit with for `exc` (printing a message code to stderr, as it does)."""
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


def _run_job(argv: list[str], log: Path, slate: _CleanSlate) -> int:
    """`plantfed ARGV` in this process, its stdout and stderr (file descriptors 1 and 2) appended to `log`."""
    import gc
    import traceback

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    try:
        slate.restore(argv)
        try:
            return main(argv)
        except SystemExit as exc:
            return _exit_code(exc)
        except Exception:
            traceback.print_exc()
            return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        gc.collect()


def cmd_plant_worker(args: argparse.Namespace) -> int:
    """A warm plant for `plantfed simulate --plant-processes warm`: Jobs as JSON lines on stdin, one at a time.

    Each line is {"id": N, "argv": [...], "log": PATH}; the answer, {"id": N, "code": EXIT_CODE}, goes to the
    status file descriptor (stdout belongs to the Job's log). The plant-side modules are imported once, here.
    """
    import importlib

    for module in ("plantfed.plant.runtime", "plantfed.tasks.bearing"):  # what every Job imports: torch, grpc, ...
        importlib.import_module(module)

    slate = _CleanSlate()
    with os.fdopen(args.status_fd, "w", buffering=1) as status:
        for line in sys.stdin:
            job = json.loads(line)
            code = _run_job([str(a) for a in job["argv"]], Path(job["log"]), slate)
            status.write(json.dumps({"id": job["id"], "code": code}) + "\n")
    return 0


#: Simulate flags that write the FederatedModel; with -f the manifest says all of this instead.
CAMPAIGN_FLAGS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "optimizer",
    "sgd_momentum",
    "fedprox_mu",
    "codec",
    "clip_norm",
    "noise_multiplier",
    "dp_mode",
    "dp_delta",
    "epsilon_budget",
    "model_name",
    "strategy",
    "variants",
    "min_participants",
    "deadline",
    "late_uploads",
    "promotion",
    "promotion_metric",
    "goal",
    "evaluation_timeout",
    "cadence",
    "stop_metric",
    "target",
    "patience",
)


def simulation_config(args: argparse.Namespace) -> SimulationConfig:
    """SimulationConfig from `plantfed simulate` flags: a FederatedModel written as flags, or -f manifests."""
    from plantfed.contract import strategies
    from plantfed.contract.api.common import MetricGoal
    from plantfed.contract.api.round import LateUploadPolicy, PromotionPolicy, Strategy
    from plantfed.contract.records import Codec, DPMode
    from plantfed.sim.profile import FLAG_FIELDS, FleetProfile, load_profile, with_flags
    from plantfed.sim.simulate import SimulationConfig

    given = strategies.given_arguments(args)
    hub_side = {p: given.pop(p) for p in list(given) if not strategies.PARAMETERS[p].crd}
    if args.manifest:
        set_here = [f"--{f.replace('_', '-')}" for f in CAMPAIGN_FLAGS if getattr(args, f) is not None]
        set_here += [strategies.PARAMETERS[p].flag for p in given]
        set_here += [strategies.PARAMETERS[p].flag for p in hub_side if p == "central_noise_multiplier"]
        if set_here:
            raise SystemExit(
                f"plantfed simulate: {', '.join(set_here)} describe the campaign, which -f already does; "
                "change the manifest instead"
            )
    profile = load_profile(args.profile) if args.profile else FleetProfile()
    if args.start is not None:
        profile = profile.model_copy(update={"start": FleetProfile(start=args.start).start})
    profile = with_flags(profile, {flag: getattr(args, flag[2:].replace("-", "_")) or [] for flag in FLAG_FIELDS})

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    train = training_defaults()

    name = args.strategy or strategies.StrategyName.FEDAVG
    central = hub_side.pop("central_noise_multiplier", None)
    return SimulationConfig(
        plants=args.plants,
        holdout=args.holdout,
        baselines=args.baselines,
        rounds=args.rounds if args.manifest else pick(args.rounds, 5),
        task=args.task,
        data=args.data,
        out=args.out,
        strategy=Strategy.model_validate({"name": name, **given}),
        central_noise_multiplier=central,
        aggregation_overrides=hub_side,
        model_name=pick(args.model_name, MODEL_NAME),
        epochs=pick(args.epochs, train["epochs"]),
        batch_size=pick(args.batch_size, train["batch_size"]),
        learning_rate=pick(args.learning_rate, train["learning_rate"]),
        optimizer=pick(args.optimizer, train["optimizer"]),
        momentum=pick(args.sgd_momentum, train["sgd_momentum"]),
        fedprox_mu=pick(args.fedprox_mu, train["fedprox_mu"]),
        codec=Codec(pick(args.codec, train["codec"])),
        clip_norm=pick(args.clip_norm, train["clip_norm"]),
        noise_multiplier=pick(args.noise_multiplier, train["noise_multiplier"]),
        dp_mode=DPMode(pick(args.dp_mode, train["dp_mode"])),
        variants=tuple(args.variants.split(",")) if args.variants else (),
        seed=args.seed,
        parallel=args.parallel,
        metrics_port=args.metrics_port,
        metrics_linger_s=args.metrics_linger,
        data_options=parse_options(args.data_option),
        label_skew_alpha=args.label_skew_alpha or 0.0,
        dp_delta=pick(args.dp_delta, 1e-5),
        epsilon_budget=args.epsilon_budget,
        plant_timeout_s=args.plant_timeout,
        plant_processes=args.plant_processes,
        plant_memory_budget_mib=args.plant_memory_budget,
        min_participants=args.min_participants,
        deadline_seconds=pick(args.deadline, 3600),
        late_upload_policy=LateUploadPolicy(pick(args.late_uploads, "Reject")),
        promotion=PromotionPolicy(pick(args.promotion, "Always")),
        promotion_metric=args.promotion_metric,
        goal=MetricGoal(args.goal) if args.goal else None,
        evaluation_timeout_s=args.evaluation_timeout,
        cadence=pick(args.cadence, ""),
        stop_metric=args.stop_metric,
        stop_target=args.target,
        patience=args.patience,
        manifests=tuple(args.manifest or ()),
        profile=profile,
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    from plantfed.sim.simulate import Simulation

    try:
        simulation = Simulation(simulation_config(args))
    except ValueError as exc:  # invalid flags, manifest or profile: nothing has started
        raise SystemExit(f"plantfed simulate: {exc}") from None
    simulation.run()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from plantfed.sim import report

    if (args.run_dir is None) == (args.prometheus is None):
        raise SystemExit("plantfed report: give either a run directory or --prometheus URL (not both)")
    if args.run_dir is not None:
        try:
            print(report.render_run(args.run_dir, args.out))
        except FileNotFoundError as exc:
            raise SystemExit(f"plantfed report: {exc}") from None
        run = json.loads((Path(args.run_dir) / "report.json").read_text())
        for part in report.missing_parts(run):
            print(f"incomplete run: {part}", file=sys.stderr)
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

    p = sub.add_parser(
        "simulate",
        help="rehearse a campaign on this machine: the operator's policy in virtual time, plants as processes",
        description="Rehearse a campaign on this machine. The campaign is a FederatedModel, from -f or written "
        "as flags; the operator's reconcilers run it in virtual time, each plant trains as its own process.",
        formatter_class=_ShowDefaults,
    )
    p.add_argument(
        "-f",
        "--filename",
        dest="manifest",
        action="append",
        type=Path,
        metavar="MANIFEST",
        help="FederatedModel or FederatedRound manifest, optionally with PlantParticipants (repeatable)",
    )
    p.add_argument("--plants", type=int, default=3, help="plants to create when no PlantParticipants are given")
    p.add_argument("--holdout", type=int, default=0, help="the last K plants never train; they only score models")
    p.add_argument("--baselines", action="store_true", help="also train centralised and siloed models (same budget)")
    p.add_argument("--rounds", type=int, help="the campaign's maxRounds (default 5; with -f: the manifest's)")
    p.add_argument("--task", default="bearing", help="built-in task name or 'module:Class'")
    p.add_argument("--model-name", help=f"the FederatedModel's name (default {MODEL_NAME}; with -f: the manifest's)")
    p.add_argument(
        "--data",
        type=Path,
        help="one directory handed to every plant, each loading its own part (e.g. ../shared/data/cwru: plant i is "
        "the i-th motor load); default: the task's synthetic data",
    )
    p.add_argument(
        "--data-option", action="append", default=[], metavar="KEY=VALUE", help="task-specific data option (repeatable)"
    )
    p.add_argument("--out", type=Path, default=Path("runs/simulate"), help="run directory (must not hold a run)")
    p.add_argument("--variants", help="comma-separated model variants assigned to plants in turn, e.g. full,light")
    p.add_argument("--seed", type=int, default=0, help="initial weights, data and training order")
    p.add_argument("--parallel", type=int, default=0, help="plants training at once (default: one per core)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    p.add_argument(
        "--metrics-linger",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="with --metrics-port: keep serving this long after the run, for a last scrape",
    )
    p.add_argument(
        "--plant-timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="kill a plant process with no result after this long (real time) and report it failed",
    )
    p.add_argument(
        "--plant-processes",
        choices=("warm", "fresh"),
        default="warm",
        help="warm: one worker process per plant kept across rounds (default); fresh: a new process per Job, "
        "as pods run",
    )
    p.add_argument(
        "--plant-memory-budget",
        type=float,
        metavar="MIB",
        help="warm: memory the live plant workers may hold; at most budget / per-worker memory (Pss) are alive "
        "at once, idle ones evicted least recently used first (default: 75%% of available memory)",
    )
    p.add_argument("--dp-delta", type=float, help="δ at which each plant's ε is reported (default 1e-5)")
    p.add_argument("--epsilon-budget", type=float, help="a plant whose next round would exceed this ε sits it out")
    for action in _add_training_args(p):  # unset: the manifest's with -f, else plantfed train's default
        action.help = f"{action.help or ''} (default: {action.default})".lstrip()
        action.default = None
    strategies.add_arguments(p, default=None)
    campaign = p.add_argument_group("campaign (the FederatedModel's roundTemplate, stop and cadence)")
    campaign.add_argument("--min-participants", type=int, help="quorum (default: 2, or all training plants if fewer)")
    campaign.add_argument("--deadline", type=int, metavar="SECONDS", help="deadlineSeconds (default 3600, virtual)")
    campaign.add_argument("--late-uploads", choices=("Reject", "Record"), help="lateUploadPolicy (default Reject)")
    campaign.add_argument("--promotion", choices=("Always", "IfBetter"), help="promotion policy (default Always)")
    campaign.add_argument(
        "--promotion-metric", help="IfBetter compares this metric (default: val_<the task's primary score>)"
    )
    campaign.add_argument(
        "--goal",
        choices=("Maximize", "Minimize"),
        help="for --promotion-metric and --stop-metric (default: the goal the task declares for that score)",
    )
    campaign.add_argument(
        "--evaluation-timeout",
        type=int,
        metavar="SECONDS",
        help="how long contributing plants get to score a candidate (default 0 under Always, 600 under IfBetter)",
    )
    campaign.add_argument("--cadence", help="cron schedule of rounds (virtual time); default: back to back")
    campaign.add_argument(
        "--stop-metric", help="stop criteria metric (default with --target/--patience: val_<primary score>)"
    )
    campaign.add_argument("--target", type=float, help="stop once a round's --stop-metric reaches this")
    campaign.add_argument("--patience", type=int, help="stop after this many rounds without improvement")
    fleet = p.add_argument_group("heterogeneity (VALUE for every plant, PLANT=VALUE for one; repeatable)")
    fleet.add_argument("--profile", type=Path, help="YAML heterogeneity profile (see examples/simulate/fleet.yaml)")
    fleet.add_argument("--plant-slowdown", action="append", metavar="[PLANT=]FACTOR", help="train time × this")
    fleet.add_argument(
        "--plant-dropout", action="append", metavar="[PLANT=]P", help="chance a plant's round never returns"
    )
    fleet.add_argument("--plant-bandwidth", action="append", metavar="[PLANT=]MBIT/S", help="link speed")
    fleet.add_argument("--start", help="virtual clock start, RFC 3339 (default 2025-01-06T00:00:00Z)")
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
    _add_label_skew(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("plant-worker", help="a warm plant process for `plantfed simulate` (Jobs on stdin)")
    p.add_argument("--status-fd", type=int, required=True, help="file descriptor for one status line per Job")
    p.set_defaults(func=cmd_plant_worker)

    from plantfed.engine import aggregate_cli

    p = sub.add_parser("aggregate", help="aggregate one round from the model store (the aggregation Job)")
    aggregate_cli.add_arguments(p)
    p.set_defaults(func=aggregate_cli.run)

    from plantfed.exchange import cli as exchange_cli

    p = sub.add_parser("exchange", help="serve the gRPC model exchange (hub)")
    exchange_cli.add_arguments(p)
    p.set_defaults(func=exchange_cli.run)

    from plantfed.plant.agent import cli as agent_cli
    from plantfed.plant.agent import reach

    p = sub.add_parser("agent", help="run a plant's agent: heartbeat, training Jobs for assigned rounds, model cache")
    agent_cli.add_arguments(p)
    p.set_defaults(func=agent_cli.run)

    p = sub.add_parser(
        "reach-hub", help="check that this plant reaches its hub's exchange and API server as itself (exit 0/1)"
    )
    reach.add_arguments(p)
    p.set_defaults(func=reach.run)

    p = sub.add_parser("report", help="render convergence plots (PNG) from a run directory or from Prometheus")
    p.add_argument("run_dir", type=Path, nargs="?", help="a `plantfed simulate` output directory (report.json)")
    p.add_argument("--out", type=Path, help="PNG to write (default: RUN_DIR/convergence.png, or ./convergence.png)")
    p.add_argument("--prometheus", metavar="URL", help="read plantfed's metrics from this Prometheus instead")
    p.add_argument("--model", help="with --prometheus: the model lineage to plot")
    p.add_argument("--namespace", help="with --prometheus: only series with this namespace label")
    p.add_argument("--since", default="6h", help="with --prometheus: how far back to look (default 6h)")
    p.add_argument("--step", help="with --prometheus: query resolution (default: the window / 10000, at least 1s)")
    p.set_defaults(func=cmd_report)

    from plantfed.hub import healthcheck, init_model, shutdown
    from plantfed.hub import run as hub_operator

    p = sub.add_parser("operator", help="run the hub operator (kopf): rounds, campaigns, participants")
    hub_operator.add_arguments(p)
    p.set_defaults(func=hub_operator.run)

    p = sub.add_parser(
        "stop-operator", help="stop the hub operator and release its finalizers (the chart's pre-delete hook)"
    )
    shutdown.add_arguments(p)
    p.set_defaults(func=shutdown.run)

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

    p = sub.add_parser("task", help="write a new task package, or check a task on one plant's data")
    task_sub = p.add_subparsers(dest="task_command", required=True)
    init = task_sub.add_parser(
        "init", help="scaffold a task package (task module, tests, pyproject, Dockerfile) in DIR/NAME"
    )
    init.add_argument("name", help="the package's (module's) name, e.g. rul_press")
    init.add_argument("--dir", type=Path, default=Path("."), help="where to create it (default: here)")
    init.set_defaults(func=cmd_task_init)
    check = task_sub.add_parser(
        "check",
        help="run a task on one plant's data and check what federating it relies on (exit 1 on any failure)",
        formatter_class=_ShowDefaults,
    )
    check.add_argument("ref", help="built-in task name or 'module:Class'")
    check.add_argument("--data", type=Path, help="one plant's data directory (default: the task's synthetic data)")
    check.add_argument(
        "--data-option", action="append", default=[], metavar="KEY=VALUE", help="task-specific data option (repeatable)"
    )
    check.add_argument("--plant-index", type=int, default=0, help="which partition of a shared or synthetic source")
    check.add_argument("--num-plants", type=int, default=1, help="plants sharing the source")
    check.add_argument("--seed", type=int, default=0, help="DataSpec.seed and the models' initial weights")
    check.add_argument("--batch-size", type=int, default=32, help="batches for scoring, the training step and export")
    check.set_defaults(func=cmd_task_check)

    p = sub.add_parser("store", help="inspect the hub's model store")
    store_sub = p.add_subparsers(dest="store_command", required=True)
    fsck = store_sub.add_parser(
        "fsck", help="check every blob's digest and that the store's records agree (exit 1 on any finding)"
    )
    fsck.add_argument("--store", type=Path, required=True, metavar="DIR", help="the model store directory")
    fsck.set_defaults(func=cmd_store_fsck)
    return parser


def cmd_task_init(args: argparse.Namespace) -> int:
    from plantfed.tasks.scaffold import class_name, scaffold

    try:
        files = scaffold(args.name, args.dir)
    except ValueError as exc:
        raise SystemExit(f"plantfed task init: {exc}") from None
    for path in files:
        print(path)
    root = args.dir / args.name
    print(f"next: cd {root} && python -m pytest; the task is --task {args.name}.task:{class_name(args.name)}")
    return 0


def cmd_task_check(args: argparse.Namespace) -> int:
    """One line per check on stdout; exit 1 if the task cannot be loaded or any check fails."""
    from plantfed.tasks.check import check_task, render
    from plantfed.tasks.sdk import DataSpec, load_task

    try:
        task = load_task(args.ref)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        hint = " (is its package installed, or its directory on PYTHONPATH?)" if isinstance(exc, ImportError) else ""
        print(f"FAIL  loads task: {args.ref}: {type(exc).__name__}: {exc}{hint}")
        return 1
    spec = DataSpec(
        plant="check",
        path=args.data,
        plant_index=args.plant_index,
        num_plants=args.num_plants,
        seed=args.seed,
        options=parse_options(args.data_option),
    )
    where = "synthetic data" if args.data is None else str(args.data)
    print(f"plantfed task check {args.ref} on {where} (plant_index {args.plant_index}, num_plants {args.num_plants})")
    text, ok = render(check_task(task, spec, batch_size=args.batch_size))
    print(text)
    return 0 if ok else 1


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


def cmd_store_fsck(args: argparse.Namespace) -> int:
    """Each finding on stderr, a summary on stdout; read-only."""
    from plantfed.engine.fsck import fsck
    from plantfed.engine.store import ModelStore

    if not (args.store / "blobs").is_dir():
        print(f"error: {args.store} is not a model store (no blobs/ directory)", file=sys.stderr)
        return 2
    report = fsck(ModelStore(args.store))
    for finding in report.findings:
        print(finding, file=sys.stderr)
    checked = f"{report.blobs} blobs, {report.versions} versions, {report.rounds} rounds"
    if report.findings:
        print(f"store {args.store}: {len(report.findings)} problem(s) found ({checked} checked)")
        return 1
    print(f"store {args.store}: no problems found ({checked} checked)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
