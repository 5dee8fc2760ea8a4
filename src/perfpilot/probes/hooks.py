"""Hooks that let perfpilot see inside an unmodified PyTorch script.

:class:`TorchHooks` patches a handful of PyTorch entry points and reports to a
:class:`~perfpilot.probes.steps.StepTracker`:

* ``DataLoader.__init__``/``__iter__`` and ``_BaseDataLoaderIter.__next__``: loader
  settings, where the loader was built, time waiting for batches, batch sizes;
* module forwards of *root* modules (called while no other module runs): global module
  hooks find the roots during warm-up, then a wrapper around the root's class
  ``__call__`` times them (:mod:`perfpilot.probes.roots`: global hooks put every
  submodule call on PyTorch's slow path, measured +12% on a small MLP step, see
  docs/profile.md; hooks on the instance would be pickled with the user's model);
  global hooks come back for one step every :data:`REDISCOVER_EVERY` step boundaries to
  catch new roots;
* ``torch.autograd.backward``/``grad``, global optimizer step pre/post hooks and
  ``Optimizer.zero_grad``;
* ``torch.save``/``load``, ``pickle``/``numpy`` save and load: I/O time per call site;
* ``torch.set_num_threads``: who set the thread count, and to what.

``overrides`` apply settings perfpilot controls to the script (``--verify``, ``perfpilot
run-script`` and tuning trials): every knob of a script plan but ``env``, applied and
recorded by :class:`~perfpilot.probes.inject.Injector` (the DataLoader knobs through
``DataLoader.__init__``, ``cpu_threads`` through ``torch.set_num_threads``).

The backward wrapper also keeps the training loss of each step
(:mod:`perfpilot.probes.losses`).

Every wrapper catches its own failures: a probe must never break the user's program
(a failure becomes a line in ``errors``, the record's ``profile.hook_errors``). Nothing
perfpilot installs is reachable from the user's objects: patches are on classes and
modules, never on instances, so the user's models pickle and deep-copy as without
perfpilot. After :meth:`TorchHooks.uninstall` (or :attr:`TorchHooks.closed`), every
wrapper still in place passes straight through.
Only the main thread's calls are tracked (the step timeline is the main thread's); calls
from other threads pass straight through.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from threading import get_ident
from typing import Any

from perfpilot.probes.frames import caller_site, user_site
from perfpilot.probes.inject import Injector
from perfpilot.probes.loader_hooks import LOADER_KNOBS, LoaderHooks, batch_size_of, site_list
from perfpilot.probes.losses import LossRecorder
from perfpilot.probes.roots import RootHooks
from perfpilot.probes.steps import StepTracker

__all__ = ["LOADER_KNOBS", "TorchHooks", "batch_size_of"]

REDISCOVER_EVERY = 50
NOGRAD_PROBES = 7  # grad-in-eval calls whose inputs are re-run to measure what grad costs
NOGRAD_BUDGET_S = 1.0  # ... while re-running has taken less than this (a probe starts
# under it and may end past it: a big model's second-long forward gets one probe of 2
# warm-up and 4 timed forwards, where 3 probes of 4 ran before)
# Order of the re-run forwards (True: grad on) in one probe: ABBA BAAB, best of 4 each.
# With 3 probes of best-of-2 (~1 ms forwards), a CI run measured the grad_in_eval
# example's grad mode at 1.03x, under the 1.1x its test asks of that example.
NOGRAD_ORDER = (True, False, False, True, False, True, True, False)


class TorchHooks(LoaderHooks, RootHooks):
    """Installs and removes the patches (see the module docstring)."""

    def __init__(self, tracker: StepTracker, *, overrides: dict[str, Any] | None = None,
                 measure_nograd: bool = True,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.t = tracker
        self.clock = clock
        self.overrides = dict(overrides or {})
        self.measure_nograd = measure_nograd
        self._inj_token: Any = None  # what the injection's exit needs (a root's autocast)
        self._undo: list[Callable[[], None]] = []
        self.loaders: dict[int, dict[str, Any]] = {}
        self.io: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.grad_in_eval: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.nograd_ratios: list[float] = []
        self._nograd_s = 0.0  # time spent re-running forwards for nograd_ratios
        self.set_threads_calls: list[dict[str, Any]] = []
        self.optimizers: dict[int, dict[str, Any]] = {}
        self.roots: dict[int, dict[str, Any]] = {}
        self.errors: list[str] = []
        self.inj = Injector(self.overrides, self._patch, self._error)
        self.losses = LossRecorder()
        self._boundary_opt: int | None = None
        self.closed = False  # set by uninstall: every wrapper passes straight through
        self._init_roots()
        self._boundaries = 0
        self._bwd_depth = 0
        self._io_depth = 0
        self._probing = False
        self._gie_last: dict[str, Any] | None = None
        self.on_boundary: list[Callable[[str], None]] = []
        self._main = threading.main_thread().ident
        tracker.on_boundary = self._boundary

    # ------------------------------------------------------------ install

    def install(self) -> None:
        import torch

        self.torch = torch
        self._patch_loader()
        self._enable_global()
        self._patch_backward()
        self._patch_optimizer()
        self._patch_io()
        self._patch_threads()
        if "cpu_threads" in self.overrides:
            torch.set_num_threads(int(self.overrides["cpu_threads"]))
        try:
            self.inj.install(torch)
        except Exception as e:  # what it could not do is refused; the script runs on
            self._error("inject", e)

    def uninstall(self) -> None:
        """Remove every patch (idempotent; safe from another thread: a wrapper that is
        running finishes, then passes through)."""
        self.closed = True
        self._disable_global()
        self._unwrap_classes()
        while self._undo:
            try:
                self._undo.pop()()
            except Exception:
                pass

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        orig = getattr(owner, name)
        setattr(owner, name, make(orig))
        self._undo.append(lambda: setattr(owner, name, orig))

    def _error(self, where: str, e: BaseException) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"{where}: {type(e).__name__}: {e}")

    def _event(self, where: str, fn: Callable[..., Any], *args: Any) -> bool:
        """Call a tracker event; a failure is noted, never raised into the script."""
        try:
            fn(*args)
            return True
        except Exception as e:
            self._error(where, e)
            return False

    # ------------------------------------------------------------ module forwards

    def _root_begin(self, module: Any, args: Any,
                    kwargs: dict[str, Any] | None = None) -> None:
        """A root's forward starts (see :mod:`perfpilot.probes.roots` for the roles)."""
        try:
            root = self.roots.get(id(module))
            grad = self.torch.is_grad_enabled()
            training = module.training
            if root is not None:
                root["calls"] += 1
            if root is not None and root.get("role") == "loss":
                # A loss follows the model's forward: forward time, no step of its own.
                self.t.forward_begin(step=False)
                return
            mode = (not training) or (not grad)  # evaluation, not a training forward
            self.t.forward_begin(eval_mode=mode, batch_size=self.batch_of(root, args, kwargs))
            if root is not None and root["has_params"]:
                if grad and not training:
                    self._grad_in_eval(module, args)
                elif not mode:
                    self._gie_last = None  # a training forward: what follows is its backward
        except Exception as e:
            self._error("forward", e)

    def _root_end(self, module: Any, args: Any) -> None:
        self._event("forward", self.t.forward_end)

    # ------------------------------------------------------------ grad-in-eval

    def _grad_in_eval(self, module: Any, args: Any) -> None:
        site = user_site(sys._getframe(3))
        key = (id(module), site)
        rec = self.grad_in_eval.get(key)
        if rec is None:
            rec = self.grad_in_eval[key] = {"module": type(module).__name__,
                                            "site": site_list(site), "calls": 0,
                                            "then_backward": 0}
        rec["calls"] += 1
        self._gie_last = rec
        if self.measure_nograd and rec["calls"] >= 2 and \
                len(self.nograd_ratios) < NOGRAD_PROBES and self._nograd_s < NOGRAD_BUDGET_S:
            try:
                self.nograd_ratios.append(self._grad_cost(module, args))
            except Exception as e:
                self._error("no_grad probe", e)

    def _grad_cost(self, module: Any, args: Any) -> float:
        """Time extra forwards on these inputs with and without grad (:data:`NOGRAD_ORDER`,
        best of each); the ratio is what grad mode costs. Kept out of the timeline."""
        self._probing = True
        times = {True: [], False: []}
        # The first probe warms each mode up untimed: its no-grad forwards would be the
        # first ever run, timing start-up rather than grad mode.
        warm_up = (False, True) if not self.nograd_ratios else ()
        start = self.clock()
        try:
            for grad in warm_up:
                with self.torch.set_grad_enabled(grad):
                    module(*args)
            for i, grad in enumerate(NOGRAD_ORDER):
                if i >= 4 and self._nograd_s + self.clock() - start > NOGRAD_BUDGET_S:
                    break  # A B B A done and the budget spent
                with self.torch.set_grad_enabled(grad):
                    t0 = self.clock()
                    module(*args)
                    times[grad].append(self.clock() - t0)
        finally:
            self._nograd_s += self.clock() - start
            self._probing = False
            self.t.skip()
        return min(times[True]) / max(min(times[False]), 1e-9)

    # ------------------------------------------------------------ backward, optimizer

    def _patch_backward(self) -> None:
        import torch.autograd as ag

        hooks = self

        def make(orig: Any, loss: bool = False) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if hooks._bwd_depth or hooks.closed or get_ident() != hooks._main:
                    return orig(*args, **kwargs)
                if not hooks._event("backward", hooks._backward_begin):
                    return orig(*args, **kwargs)
                if loss:
                    first = args[0] if args else kwargs.get("tensors")
                    hooks._event("loss", hooks._loss, first)
                hooks._bwd_depth += 1
                try:
                    return orig(*args, **kwargs)
                finally:
                    hooks._bwd_depth -= 1
                    hooks._event("backward", hooks.t.backward_end)
            wrapper.__wrapped__ = orig  # type: ignore[attr-defined]
            return wrapper

        self._patch(ag, "backward", lambda orig: make(orig, loss=True))
        self._patch(ag, "grad", make)

    def _loss(self, first: Any) -> None:
        self.losses.on_backward(first, self.t.boundaries(), self.clock() - self.t.process_start)

    def _backward_begin(self) -> None:
        if self._gie_last is not None:
            # Grad was needed: this eval-mode forward was training (frozen BN...).
            self._gie_last["then_backward"] += 1
            self._gie_last = None
        self.t.backward_begin()

    def _patch_optimizer(self) -> None:
        import torch.optim.optimizer as om

        handles = [om.register_optimizer_step_pre_hook(self._opt_pre),
                   om.register_optimizer_step_post_hook(self._opt_post)]
        self._undo.append(lambda: [h.remove() for h in handles])
        hooks = self

        def make(orig: Any) -> Any:
            def zero_grad(self: Any, *args: Any, **kwargs: Any) -> Any:
                if hooks.closed or get_ident() != hooks._main:
                    return orig(self, *args, **kwargs)
                if not hooks._event("zero_grad", hooks.t.optimizer_begin, False):
                    return orig(self, *args, **kwargs)
                try:
                    return orig(self, *args, **kwargs)
                finally:
                    hooks._event("zero_grad", hooks.t.optimizer_end, False)
            return zero_grad

        self._patch(om.Optimizer, "zero_grad", make)

    def _opt_pre(self, opt: Any, args: Any, kwargs: Any) -> None:
        if get_ident() == self._main and not self.closed:
            self._event("optimizer", self.t.optimizer_begin)

    def _opt_post(self, opt: Any, args: Any, kwargs: Any) -> None:
        if get_ident() == self._main and not self.closed:
            self._event("optimizer", self._opt_step, opt)

    def _opt_step(self, opt: Any) -> None:
        key = id(opt)
        if key not in self.optimizers:
            self.optimizers[key] = {"type": type(opt).__name__, "steps": 0,
                                    "groups": len(opt.param_groups)}
            if self._boundary_opt is None:
                self._boundary_opt = key
        self.optimizers[key]["steps"] += 1
        # With several optimizers (GANs), the first one seen marks the steps.
        self.t.optimizer_end(step=key == self._boundary_opt)

    def _boundary(self, kind: str) -> None:
        # Switch discovery on/off only between forwards (loader/backward/optimizer).
        if kind != "forward" and self._active is None and not self.closed:
            self._boundaries += 1
            # A compiled model must not run under the global hooks (dynamo would trace
            # them): no discovery once one is compiled.
            compiled = self.inj.compiled
            if self._global and (self.t.warmup_end is not None or compiled):
                self._disable_global()
            elif (not self._global and self._boundaries % REDISCOVER_EVERY == 0
                  and not compiled):
                self._enable_global()
            if kind in ("optimizer", "backward"):
                self._event("loss", self.losses.flush)
        for fn in self.on_boundary:
            try:
                fn(kind)
            except Exception as e:
                self._error("boundary", e)

    # ------------------------------------------------------------ I/O

    def _patch_io(self) -> None:
        import pickle

        targets: list[tuple[Any, str, str]] = [(self.torch, "save", "write"),
                                               (self.torch, "load", "read"),
                                               (pickle, "dump", "write"),
                                               (pickle, "load", "read")]
        np = sys.modules.get("numpy")
        if np is not None:
            targets += [(np, "save", "write"), (np, "savez", "write"),
                        (np, "savez_compressed", "write"), (np, "load", "read")]
        for owner, name, kind in targets:
            self._patch(owner, name, self._io_wrapper(f"{owner.__name__}.{name}", kind))

    def _io_wrapper(self, label: str, kind: str) -> Callable[[Any], Any]:
        hooks = self

        def make(orig: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if hooks._io_depth or hooks.closed or get_ident() != hooks._main:
                    return orig(*args, **kwargs)
                if not hooks._event(label, hooks.t.io_begin):
                    return orig(*args, **kwargs)
                hooks._io_depth += 1
                t0 = hooks.clock()
                try:
                    return orig(*args, **kwargs)
                finally:
                    dt = hooks.clock() - t0
                    hooks._io_depth -= 1
                    hooks._event(label, hooks.t.io_end)
                    hooks._event(label, hooks._record_io, label, kind, dt)
            wrapper.__wrapped__ = orig  # type: ignore[attr-defined]
            return wrapper

        return make

    def _record_io(self, label: str, kind: str, dt: float) -> None:
        site = caller_site(3)
        phase = ("startup" if self.t.first_activity is None else
                 "eval" if self.t.in_eval else
                 "warmup" if self.t.warmup_end is None else "steady")
        key = (label, site, phase)
        rec = self.io.get(key)
        if rec is None:
            rec = self.io[key] = {"call": label, "kind": kind, "site": site_list(site),
                                  "phase": phase, "count": 0, "seconds": 0.0}
        rec["count"] += 1
        rec["seconds"] += dt

    # ------------------------------------------------------------ threads

    def _patch_threads(self) -> None:
        hooks = self

        def make(orig: Any) -> Any:
            def set_num_threads(n: int) -> None:
                if hooks.closed:
                    return orig(n)
                try:
                    hooks.set_threads_calls.append({"value": int(n),
                                                    "site": site_list(caller_site(1))})
                except Exception as e:
                    hooks._error("set_num_threads", e)
                if "cpu_threads" in hooks.overrides:
                    return orig(int(hooks.overrides["cpu_threads"]))
                return orig(n)
            return set_num_threads

        self._patch(self.torch, "set_num_threads", make)

    # ------------------------------------------------------------ output

    def section(self) -> dict[str, Any]:
        """Loaders, roots, optimizers, I/O, grad-in-eval, thread settings, hook errors."""
        roles = self.t.loader_role
        loaders = []
        for key, info in self.loaders.items():
            loaders.append({**info, "role": roles.get(key, "unused" if not info["batches"]
                                                    else "unknown")})
        roots = [{k: v for k, v in r.items() if k != "handles"} for r in self.roots.values()]
        return {
            "loaders": loaders, "roots": roots, "optimizers": list(self.optimizers.values()),
            "io": sorted(self.io.values(), key=lambda r: r["seconds"], reverse=True),
            "grad_in_eval": {"calls": sorted(self.grad_in_eval.values(),
                                             key=lambda r: r["calls"], reverse=True),
                             "grad_over_nograd": self.nograd_ratios},
            "set_num_threads": self.set_threads_calls[:20],
            "overrides": self.overrides, "errors": self.errors,
            "injection": self.inj.section(final=self.closed),
            "losses": self.losses.section(final=self.closed),
        }
