"""The one definition of plantfed's aggregation strategies: names, parameters, defaults, bounds, docs.

Everything that names a strategy or one of its parameters is derived from `STRATEGIES` and `PARAMETERS`:
the CRD's `Strategy` model (`plantfed.contract.api.round`, hence `crds/*.yaml`), the engine's
`StrategyConfig`, the aggregation Job's `plantfed aggregate` flags (the argparse below and the command the
operator writes into the Job) and `plantfed simulate`'s flags. A parameter has one snake_case name; its CRD
field is the camelCase of it, its flag the kebab-case (`server_learning_rate` → `serverLearningRate`,
`--server-learning-rate`), so no table translates between spellings.

Defaults. Parameters have one default, except where a strategy declares its own: the adaptive optimisers
take a small server step (see `STRATEGIES`). Where the defaults come from:

* FedAdam / FedYogi (Reddi et al. 2021, "Adaptive Federated Optimization", ICLR): β1 = 0.9 and β2 = 0.99 are
  the values the paper fixes for all its experiments; τ = 1e-3 and a server learning rate η = 0.01 lie in the
  grids it tunes over (τ ∈ {1e-1 … 1e-5}, η ∈ {1e-3 … 1e1}) and are what bench/RESULTS.md measured FedAdam
  with. An adaptive step of 1.0 would move every coordinate by about one unit per round.
* FedAvgM (Hsu et al. 2019, "Measuring the Effects of Non-Identical Data Distribution for Federated Visual
  Classification"): server momentum β = 0.9 on the averaged delta with η = 1.0, the configuration in the
  paper's sweep that keeps FedAvg's step size and adds momentum.
* FedAvg / FedProx / trimmed mean / median: η = 1.0, i.e. the aggregate delta is applied as is.

Spelling. A strategy's name is its CRD enum value (`trimmedMean`); `StrategyName.parse` also accepts the
snake_case of it (`trimmed_mean`), which older `plantfed` command lines used. The CRD itself only accepts
the canonical value, exactly as the API server does.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Value = float | int


class StrategyName(StrEnum):
    FEDAVG = "fedavg"
    FEDPROX = "fedprox"
    FEDADAM = "fedadam"
    FEDYOGI = "fedyogi"
    FEDAVGM = "fedavgm"
    TRIMMED_MEAN = "trimmedMean"
    MEDIAN = "median"

    @property
    def alias(self) -> str:
        """The snake_case spelling (`trimmed_mean`), accepted wherever a name is parsed from text."""
        return snake_case(self.value)

    @classmethod
    def parse(cls, text: str) -> StrategyName:
        """A strategy from its name or the snake_case of it; ValueError names the choices otherwise."""
        for name in cls:
            if text in (name.value, name.alias):
                return name
        choices = ", ".join(n.value for n in cls)
        raise ValueError(f"unknown strategy {text!r}: choose one of {choices}")


def snake_case(text: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", text).lower()


def camel_case(text: str) -> str:
    head, *rest = text.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class Parameter:
    """One strategy parameter. `crd`: settable in a FederatedRound's `strategy` (else hub-side only)."""

    name: str
    doc: str
    default: Value | None
    integer: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    crd: bool = True
    #: Extra flag spellings kept for command lines written before this vocabulary existed.
    flag_aliases: tuple[str, ...] = ()
    #: 0 means "off" (None) too, so manifests written when the CRD defaulted it to 0 stay valid.
    off_at_zero: bool = False
    #: Set for a strategy that does not use it, this is an error (with this reason), not ignored: a privacy
    #: setting must never be dropped silently.
    refused_by_others: str | None = None

    @property
    def field(self) -> str:
        """The CRD field (camelCase)."""
        return camel_case(self.name)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Value) -> Value:
        """`value` if it is within bounds, else ValueError naming the parameter and the bound."""
        checks = (
            ("greater than or equal to", self.ge, self.ge is not None and value < self.ge),
            ("greater than", self.gt, self.gt is not None and value <= self.gt),
            ("less than or equal to", self.le, self.le is not None and value > self.le),
            ("less than", self.lt, self.lt is not None and value >= self.lt),
        )
        for words, bound, broken in checks:
            if broken:
                raise ValueError(f"{self.name} must be {words} {bound:g}, got {value!r}")
        return value


@dataclass(frozen=True)
class Strategy:
    """A strategy: which parameters it uses, and defaults of its own where they differ from the parameter's."""

    name: StrategyName
    doc: str
    parameters: tuple[str, ...]
    defaults: Mapping[str, Value] = field(default_factory=dict)
    #: Coordinate-wise robust aggregate (uniform weights); central DP noise is calibrated for a weighted mean.
    robust: bool = False

    def default(self, parameter: str) -> Value | None:
        return self.defaults.get(parameter, PARAMETERS[parameter].default)


_EVERY = ("server_learning_rate", "norm_bound")
_MEAN = (*_EVERY, "central_noise_multiplier", "noise_seed")
_ADAPTIVE = (*_MEAN, "beta1", "beta2", "tau")
_ROBUST = (*_EVERY, "buffer_bytes")

PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter(
            "server_learning_rate",
            "Server learning rate: the global model moves by this times the (optimised) aggregate delta.",
            1.0,
            gt=0,
            le=100,
            flag_aliases=("--server-lr",),
        ),
        Parameter("beta1", "First-moment decay (β1).", 0.9, ge=0, lt=1),
        Parameter("beta2", "Second-moment decay (β2).", 0.99, ge=0, lt=1),
        Parameter("tau", "Adaptivity floor (τ).", 1e-3, gt=0, le=1),
        Parameter("momentum", "Server momentum (β of FedAvgM).", 0.9, ge=0, lt=1, flag_aliases=("--server-momentum",)),
        Parameter("trim_fraction", "Fraction of values trimmed at each end, per coordinate.", 0.1, ge=0, lt=0.5),
        Parameter(
            "norm_bound",
            "Clip each update to this L2 norm before aggregating; unset or 0 disables.",
            None,
            ge=0,
            off_at_zero=True,
        ),
        Parameter(
            "central_noise_multiplier",
            "Central DP: sigma; adds N(0, (sigma * normBound * max weight)^2) to the aggregate (needs normBound). "
            "A FederatedRound sets it with privacy.mode central.",
            None,
            gt=0,
            crd=False,
            refused_by_others="central DP noise is calibrated for a weighted mean",
        ),
        Parameter(
            "noise_seed",
            "Seed of the central DP noise, for reproducible tests only: predictable noise is no noise. "
            "Default: the operating system's randomness.",
            None,
            integer=True,
            ge=0,
            crd=False,
        ),
        Parameter(
            "buffer_bytes",
            "Memory budget of one coordinate block of the robust aggregate.",
            256 * 1024**2,
            integer=True,
            gt=0,
            crd=False,
        ),
    )
}

STRATEGIES: dict[StrategyName, Strategy] = {
    s.name: s
    for s in (
        Strategy(StrategyName.FEDAVG, "Sample-weighted mean of the plants' deltas (McMahan et al. 2017).", _MEAN),
        Strategy(
            StrategyName.FEDPROX,
            "FedAvg at the hub; plants add the proximal term training.fedProxMu (Li et al. 2020).",
            _MEAN,
        ),
        Strategy(
            StrategyName.FEDADAM,
            "Adam on the aggregate delta as pseudo-gradient (Reddi et al. 2021).",
            _ADAPTIVE,
            {"server_learning_rate": 0.01},
        ),
        Strategy(
            StrategyName.FEDYOGI,
            "Yogi on the aggregate delta as pseudo-gradient (Reddi et al. 2021).",
            _ADAPTIVE,
            {"server_learning_rate": 0.01},
        ),
        Strategy(StrategyName.FEDAVGM, "FedAvg with server momentum (Hsu et al. 2019).", (*_MEAN, "momentum")),
        Strategy(
            StrategyName.TRIMMED_MEAN,
            "Coordinate-wise mean after dropping the trimFraction largest and smallest values (Yin et al. 2018).",
            (*_ROBUST, "trim_fraction"),
            robust=True,
        ),
        Strategy(StrategyName.MEDIAN, "Coordinate-wise median (Yin et al. 2018).", _ROBUST, robust=True),
    )
}

CRD_PARAMETERS = tuple(p for p in PARAMETERS.values() if p.crd)


def strategy(name: StrategyName | str) -> Strategy:
    return STRATEGIES[name if isinstance(name, StrategyName) else StrategyName.parse(name)]


def _users(parameter: str) -> list[str]:
    return [s.name.value for s in STRATEGIES.values() if parameter in s.parameters]


def defaults_doc(parameter: str) -> str:
    """Which default each strategy that uses `parameter` gets, for descriptions and --help."""
    by_value: dict[Value | None, list[str]] = {}
    for s in STRATEGIES.values():
        if parameter in s.parameters:
            by_value.setdefault(s.default(parameter), []).append(s.name.value)
    if len(by_value) == 1:
        (value,) = by_value
        return "Unset by default." if value is None else f"Default {value:g}."
    parts = [f"{'unset' if v is None else f'{v:g}'} for {'/'.join(names)}" for v, names in by_value.items()]
    return "Default " + ", ".join(parts) + "."


def describe(parameter: str) -> str:
    """The full description of a parameter: what it does, which strategies use it, its defaults."""
    users = _users(parameter)
    used = "every strategy" if len(users) == len(STRATEGIES) else "/".join(users) + " (ignored by the others)"
    return f"{PARAMETERS[parameter].doc} Used by {used}. {defaults_doc(parameter)}"


def resolve(name: StrategyName, given: Mapping[str, Value | None]) -> dict[str, Value | None]:
    """Every parameter `name` uses, with the value `given` or the strategy's default (None: off)."""
    s = STRATEGIES[name]
    unknown = sorted(set(given) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown strategy parameters: {', '.join(unknown)}")
    for parameter, value in given.items():
        reason = PARAMETERS[parameter].refused_by_others
        if value is not None and reason and parameter not in s.parameters:
            raise ValueError(f"{reason}, not {name.value} ({parameter} is for {'/'.join(_users(parameter))} only)")
    out: dict[str, Value | None] = {}
    for parameter in s.parameters:
        p, value = PARAMETERS[parameter], given.get(parameter)
        if value is not None and p.off_at_zero and value == 0:
            out[parameter] = None
        else:
            out[parameter] = s.default(parameter) if value is None else p.check(value)
    return out


def command_args(name: StrategyName, given: Mapping[str, Value | None]) -> list[str]:
    """`plantfed aggregate` flags that run strategy `name` with `given` values, CRD defaults spelled out.

    Values are written with repr(), which round-trips a float exactly: the Job aggregates with precisely
    the numbers in the FederatedRound.
    """
    args = [f"--strategy={name.value}"]
    for parameter, value in resolve(name, given).items():
        # Hub-side tuning (not in the CRD) is written only when set; its defaults live in the engine.
        if value is not None and (PARAMETERS[parameter].crd or given.get(parameter) is not None):
            args.append(f"{PARAMETERS[parameter].flag}={value!r}")
    return args


def _strategy_type(text: str) -> StrategyName:
    try:
        return StrategyName.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _value_type(p: Parameter) -> Any:
    def parse(text: str) -> Value:
        try:
            value: Value = int(text) if p.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{p.flag} expects {'an integer' if p.integer else 'a number'}, got {text!r}"
            ) from None
        try:
            return p.check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{p.flag}: {exc}") from None

    parse.__name__ = "int" if p.integer else "float"
    return parse


def add_arguments(parser: argparse.ArgumentParser, *, default: StrategyName | None = StrategyName.FEDAVG) -> None:
    """`--strategy` and one flag per parameter; unset flags stay None (the strategy's default applies)."""
    group = parser.add_argument_group("aggregation strategy (see plantfed.contract.strategies)")
    names = ", ".join(n.value for n in StrategyName)
    group.add_argument(
        "--strategy",
        type=_strategy_type,
        default=default,
        metavar="NAME",
        help=f"one of {names} (snake_case accepted, e.g. trimmed_mean)"
        + (f"; default {default.value}" if default is not None else ""),
    )
    for p in PARAMETERS.values():
        group.add_argument(
            p.flag, *p.flag_aliases, dest=p.name, type=_value_type(p), default=None, help=describe(p.name)
        )


def given_arguments(args: argparse.Namespace) -> dict[str, Value]:
    """The parameters set on a command line built by `add_arguments`."""
    return {p: getattr(args, p) for p in PARAMETERS if getattr(args, p, None) is not None}


def unused(name: StrategyName, given: Iterable[str]) -> list[str]:
    """Parameters in `given` that strategy `name` ignores (for warnings, never errors: see the CRD)."""
    return [p for p in given if p not in STRATEGIES[name].parameters]
