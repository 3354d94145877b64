"""A running e2e federation: the hub release and the plants' agents joined to it."""

from __future__ import annotations

from dataclasses import dataclass

from support.federation.hubdeploy import Hub
from support.federation.plantside import ChartPlant
from support.kube import wait_for


@dataclass
class Federation:
    hub: Hub
    agents: dict[str, ChartPlant]

    def ready(self, plant: str) -> str | None:
        pp = self.hub.get("plantparticipants", plant)
        return next((c["status"] for c in pp.get("status", {}).get("conditions", []) if c["type"] == "Ready"), None)

    def wait_ready(self, plant: str, status: str = "True", timeout: float = 120) -> None:
        wait_for(lambda: self.ready(plant) == status, timeout=timeout, what=f"{plant} Ready={status}")
