"""`nbllm.map` over a Dask DataFrame: each partition is one batch run on a Dask worker.

What travels to the workers is the provider's saved form (what a config file would hold:
its URL, models, flags, prices, and where its key comes from) and the run's spec; never a
key. A worker finds the key itself, from its own environment (``--key-env VAR``,
``NBLLM_<NAME>_API_KEY``) or its own OS keyring, and a worker that has none fails its
partitions with a `MissingKeyError` naming the variable to set there.

The run's ``concurrency``, ``rpm`` and ``tpm`` are for the whole cluster: each partition
gets its share, the budget divided by the partitions that can run at once (the cluster's
worker threads, at most the number of partitions); ``max_cost`` is a total, so each partition
gets an equal part of it. Checkpoints are one SQLite file per
partition in the directory the caller names (shared storage, for workers on several hosts).
"""

from __future__ import annotations

import math
import socket
from pathlib import Path
from typing import Any

from nbllm._batch.checkpoint import fingerprint
from nbllm._batch.rows import Rows
from nbllm._batch.run import MapRun, MapSpec
from nbllm._exceptions import MissingKeyError
from nbllm._providers.auth import find_key, missing_key_hint
from nbllm._providers.config import ProviderConfig
from nbllm._providers.resolved import Resolved


def running_at_once(partitions: int) -> int:
    """How many partitions the cluster runs at once: its worker threads, at most `partitions`
    (1 when no distributed client is connected: Dask's local scheduler then runs them in turn
    as far as nbllm's share is concerned)."""
    try:
        from distributed import get_client

        threads = sum(get_client().nthreads().values())  # type: ignore[no-untyped-call]
    except (ImportError, ValueError):
        threads = 1
    return max(1, min(partitions, threads))


def share(spec: MapSpec, at_once: int, partitions: int) -> MapSpec:
    """The spec one partition runs with: the rates (concurrency, rpm, tpm) divided among the
    `at_once` partitions that run together, the cost budget among all `partitions`."""
    return MapSpec(
        template=spec.template,
        model=spec.model,
        schema=spec.schema,
        system=spec.system,
        concurrency=max(1, math.ceil(spec.concurrency / at_once)),
        rpm=spec.rpm / at_once if spec.rpm else None,
        tpm=max(1, spec.tpm // at_once) if spec.tpm else None,
        max_cost=spec.max_cost / partitions if spec.max_cost else None,
        output=spec.output,
        request=dict(spec.request),
        fallback=spec.fallback,
    )


def map_dask(frame: Any, spec: MapSpec, resolved: list[Resolved], checkpoint_dir: str | Path | None) -> Any:
    """A lazy Dask DataFrame: `frame` with the run's output columns, computed on the cluster."""
    import pandas

    providers = {r.provider.name: r.provider.saved_form() for r in resolved}
    at_once = running_at_once(frame.npartitions)
    partition_spec = share(spec, at_once, frame.npartitions)
    template_row = frame._meta
    columns = [*template_row.columns, *spec.output_columns()]
    meta = pandas.DataFrame({name: pandas.Series(dtype="object") for name in columns})
    for name in template_row.columns:
        meta[name] = template_row[name]
    run_key = fingerprint(spec.template, spec.model, providers)
    return frame.map_partitions(
        run_partition,
        partition_spec,
        providers,
        str(checkpoint_dir) if checkpoint_dir else None,
        run_key,
        meta=meta,
        partition_info=True,
    )


def run_partition(
    part: Any,
    spec: MapSpec,
    providers: dict[str, dict[str, Any]],
    checkpoint_dir: str | None,
    run_key: str,
    partition_info: dict[str, Any] | None = None,
) -> Any:
    """On a worker: one partition as one batch run, with the providers registered afresh."""
    from nbllm._batch.rows import with_outputs
    from nbllm._calls.loop_thread import loop_thread
    from nbllm._providers.store import get_store

    if part.empty:  # Dask's meta pass, or an empty partition
        return with_outputs(Rows([], "pandas", part), [])
    store = get_store()
    for name, saved in providers.items():
        known = store.providers.get(name)
        if known is not None and known.saved_form() == saved:
            # A worker thread in the notebook's own process: its provider, key and all.
            _require_key(known)
            continue
        config = ProviderConfig(**saved)
        _require_key(config)
        store.add_provider(config, replace=True)
    number = (partition_info or {}).get("number", 0)
    checkpoint: str | bool = False
    if checkpoint_dir:
        checkpoint = str(Path(checkpoint_dir) / f"{run_key[:16]}-part{number:05d}.sqlite")
    rows = Rows(part.to_dict(orient="records"), "pandas", part)
    run = MapRun(spec, rows, checkpoint=checkpoint)
    outputs = loop_thread().run(run.run())
    return with_outputs(rows, outputs)


def _require_key(config: ProviderConfig) -> None:
    if config.auth in ("none", "azure-ad"):
        return
    key, origin = find_key(config)
    if key is None:
        raise MissingKeyError(
            f"Dask worker on {socket.gethostname()} has no key for provider {config.name!r} ({origin}); "
            "keys are never sent to workers",
            hint="set the variable in every worker's environment: " + missing_key_hint(config),
        )
