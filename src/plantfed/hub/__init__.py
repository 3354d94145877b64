"""The hub operator process: kopf handlers as thin adapters over `plantfed.hub.reconcile`.

Modules, one job each:

* `config`      what the process was started with (`plantfed operator` flags);
* `kube`        Kubernetes API access (custom objects, Jobs) with the conventions the handlers need;
* `jobs`        batch/v1 Job manifests for aggregation and model initialisation;
* `observe`     gathers what a reconcile function needs from the exchange and the API server;
* `execute`     carries out the typed actions a reconcile function returns;
* `handlers`    the kopf registrations (observe → reconcile → patch status → execute);
* `telemetry`   Prometheus metrics derived from the objects' status;
* `run`         `plantfed operator`; `init_model` and `healthcheck` are the other hub subcommands.
"""
