"""The DataLoader part of :class:`~perfpilot.probes.hooks.TorchHooks` (a mixin).

``DataLoader.__init__`` records the loader's settings and where it was built (and applies
``overrides`` for ``--verify``), ``DataLoader.__iter__`` and
``_BaseDataLoaderIter.__next__`` report data waits and batch sizes to the step tracker.
"""

from __future__ import annotations

from threading import get_ident
from typing import Any

from perfpilot.probes.frames import caller_site

LOADER_KNOBS = ("num_workers", "persistent_workers", "pin_memory", "prefetch_factor",
                "batch_size")


def batch_size_of(batch: Any, _depth: int = 0, *, dim: int = 0) -> int | None:
    """Dimension ``dim`` (the leading one by default) of the first tensor in a (nested)
    batch, or None; a ``PackedSequence`` holds ``batch_sizes[0]`` sequences."""
    sizes = getattr(batch, "batch_sizes", None)
    if sizes is not None and getattr(sizes, "shape", None) is not None and len(sizes):
        return int(sizes[0])
    shape = getattr(batch, "shape", None)
    if shape is not None:
        return int(shape[dim]) if len(shape) > dim else None
    if _depth > 3:
        return None
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch[:4]:
            n = batch_size_of(item, _depth + 1, dim=dim)
            if n is not None:
                return n
    return None


def loader_batch_size(info: dict[str, Any] | None, batch: Any) -> int | None:
    """Samples in a batch from a DataLoader: its ``batch_size`` (a collate function may
    put the batch at any dimension), the known remainder for the last partial batch, and
    the batch's leading dimension when the loader has no ``batch_size`` (a sampler of
    batches)."""
    lead = batch_size_of(batch)
    size = info.get("batch_size") if info else None
    if not size:
        return lead
    n = info.get("dataset_len") if info else None
    rest = n % size if n else 0
    return rest if rest and lead == rest else size


def site_list(site: tuple[str, int, str] | None) -> list[Any] | None:
    return list(site) if site else None


class LoaderHooks:
    """Needs ``t`` (tracker), ``clock``, ``overrides``, ``loaders``, ``_main``, ``_patch``
    and ``_error`` from the class it is mixed into."""

    t: Any
    clock: Any
    closed: bool
    overrides: dict[str, Any]
    loaders: dict[int, dict[str, Any]]
    inj: Any  # perfpilot.probes.inject.Injector: told which knobs each loader took
    _main: int | None
    _loader_knobs: list[str] | None = None  # the knobs the DataLoader being built took

    def _patch(self, owner: Any, name: str, make: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    def _error(self, where: str, e: BaseException) -> None:  # pragma: no cover
        raise NotImplementedError

    def _event(self, where: str, fn: Any, *args: Any) -> bool:  # pragma: no cover
        raise NotImplementedError

    def _fetched(self, key: int | None, batch: Any, t0: float) -> None:
        """After a fetch (also one that raised, e.g. StopIteration): the data phase ends,
        the loader's counters grow. A failure here is a note, never the script's."""
        try:
            info = self.loaders.get(key) if key is not None else None
            n = loader_batch_size(info, batch) if batch is not None else None
            self.t.data_end(n)
            if info is not None:
                info["batches"] += batch is not None
                info["fetch_s"] += self.clock() - t0
                if n:
                    info["samples"] += n
        except Exception as e:
            self._error("DataLoader", e)

    # ------------------------------------------------------------ data loading

    def _patch_loader(self) -> None:
        from torch.utils.data import dataloader as dl

        hooks, main = self, self._main

        def make_init(orig: Any) -> Any:
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                args, kwargs = hooks._loader_args(orig, self, args, kwargs)
                orig(self, *args, **kwargs)
                hooks._record_loader(self)
            return __init__

        def make_iter(orig: Any) -> Any:
            def __iter__(self: Any) -> Any:
                if get_ident() != main or hooks.closed:
                    return orig(self)
                key = id(self)
                if not hooks._event("DataLoader", hooks.t.data_begin, key):
                    return orig(self)
                t0 = hooks.clock()
                try:
                    it = orig(self)
                finally:
                    hooks._event("DataLoader", hooks.t.data_end, None)
                info = hooks.loaders.get(key)
                if info is not None:
                    info["iters"] += 1
                    info["iter_s"] += hooks.clock() - t0
                try:
                    it._perfpilot_loader = key
                except AttributeError:
                    pass
                return it
            return __iter__

        def make_next(orig: Any) -> Any:
            def __next__(self: Any) -> Any:
                if get_ident() != main or hooks.closed:
                    return orig(self)
                key = getattr(self, "_perfpilot_loader", None)
                if not hooks._event("DataLoader", hooks.t.data_begin, key):
                    return orig(self)
                t0 = hooks.clock()
                batch = None
                try:
                    batch = orig(self)
                    return batch
                finally:
                    hooks._fetched(key, batch, t0)
            return __next__

        self._patch(dl.DataLoader, "__init__", make_init)
        self._patch(dl.DataLoader, "__iter__", make_iter)
        self._patch(dl._BaseDataLoaderIter, "__next__", make_next)

    def _loader_args(self, orig: Any, loader: Any, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments with the loader overrides applied (unchanged when there are none)."""
        wanted = {k: v for k, v in self.overrides.items() if k in LOADER_KNOBS}
        self._loader_knobs = []
        if not wanted:
            return args, kwargs
        import inspect

        try:
            bound = inspect.signature(orig).bind(loader, *args, **kwargs)
        except TypeError:
            return args, kwargs  # let DataLoader raise its own error
        call = dict(bound.arguments)
        call.pop(next(iter(call)))  # self
        call.update(call.pop("kwargs", {}) or {})
        if call.get("batch_sampler") is not None:
            wanted.pop("batch_size", None)
        call.update(wanted)
        if not call.get("num_workers"):
            call.pop("persistent_workers", None)
            call.pop("prefetch_factor", None)
        self._loader_knobs = [k for k in wanted if k in call and call[k] == wanted[k]]
        return (), call

    def _record_loader(self, loader: Any) -> None:
        try:
            ds = loader.dataset
            try:
                n = len(ds)
            except TypeError:
                n = None
            self.loaders[id(loader)] = {
                "id": id(loader), "dataset": type(ds).__name__, "dataset_len": n,
                "batch_size": loader.batch_size, "num_workers": loader.num_workers,
                "pin_memory": bool(loader.pin_memory),
                "persistent_workers": bool(loader.persistent_workers),
                "prefetch_factor": loader.prefetch_factor,
                "site": site_list(caller_site(2)), "batches": 0, "samples": 0,
                "fetch_s": 0.0, "iters": 0, "iter_s": 0.0,
            }
            knobs, self._loader_knobs = self._loader_knobs or [], None
            if getattr(self, "inj", None) is not None:
                self.inj.loader_built(knobs)
        except Exception as e:
            self._error("DataLoader", e)

