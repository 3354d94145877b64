"""Constant-memory aggregation of plant updates: FedAvg/FedProx, FedAdam, FedYogi, FedAvgM, trimmed mean, median.

`aggregate` is the one entry point; see `engine` for the streaming scheme and memory bound, `robust` for
the bounded coordinate-block buffer, `server_optim` for the exact server update equations, and `fedprox`
for the plant-side proximal term.
"""

from plantfed.engine.aggregation.config import AggregationResult, PlantStats, StrategyConfig, StrategyName, UpdateInput
from plantfed.engine.aggregation.engine import aggregate

__all__ = ["AggregationResult", "PlantStats", "StrategyConfig", "StrategyName", "UpdateInput", "aggregate"]
