"""Inject a script plan's changes into the running script (the runner's ``overrides``).

The overrides are a :class:`~perfpilot.script_plan.ScriptPlan`'s ``changes`` without
``env`` (the parent sets that in the child's environment). :class:`Injector` is the part
of :class:`~perfpilot.probes.hooks.TorchHooks` that applies them, where each acts:

* at ``import torch`` (:meth:`Injector.install`): ``interop_threads``
  (``torch.set_num_interop_threads``, before any parallel work), ``seed`` (torch,
  ``random`` and numpy when importable; the script's own later seeding wins, the same in
  every arm), ``cudnn_benchmark``, and ``lr_scale`` (``Optimizer.__init__`` patched: every
  optimizer built afterwards has each group's ``lr`` and ``defaults["lr"]`` multiplied,
  so a scheduler built later starts from the scaled value). ``cpu_threads`` is applied by
  the hooks (``torch.set_num_threads`` and its wrapper) and noted here.
* DataLoader knobs: applied by :mod:`perfpilot.probes.loader_hooks`, noted per loader.
* at the training forward of a *model* root (:mod:`perfpilot.probes.roots`: a root
  with parameters, grad enabled and ``module.training``), :meth:`Injector.enter`:
  ``precision`` (``bf16``: autocast around the forward, also around a loss root's forward
  in training; ``tf32``: the CUDA matmul/cuDNN flags; ``fp16`` is refused: it needs a
  GradScaler in the script's loop), ``channels_last`` (the model converted in place once,
  Parameters keep their identity so the optimizer still holds them; 4-D positional inputs
  converted on every call) and ``compile`` (``nn.Module.compile`` in place, once: the
  call that triggers it runs eagerly, the next ones compiled; the user's reference, its
  ``state_dict`` and ``torch.save(model)`` stay as without perfpilot, since
  ``Module.__getstate__`` drops ``_compiled_call_impl``).

What happened is :meth:`Injector.section`: ``applied`` (knob -> what was done) and
``refused`` (knob -> why not). A refused knob changes nothing. A knob whose target never
appeared (no model trained, no DataLoader or optimizer built) is refused at the end
(:meth:`Injector.close`). Failures of the injection itself are refusals, never the
script's errors; an error the knob causes in the script's own code (a compile error at
the first compiled call) is the script's failure, so a tuner rejects the candidate.
"""

from __future__ import annotations

import shutil
import sys
import weakref
from collections.abc import Callable
from typing import Any

from perfpilot.script_plan import KNOBS, LOADER_KNOBS

FP16_REASON = ("fp16 needs a GradScaler in the script's loop; perfpilot does not inject "
               "one (use bf16)")
NO_MODEL = "no model was trained (no training forward of a module with parameters)"
NO_LOADER = "no DataLoader was built"
NO_OPTIMIZER = "no torch.optim optimizer was built"
MODEL_KNOBS = ("precision", "channels_last", "compile")


def compile_refusal() -> str | None:
    """Why ``torch.compile`` cannot work in this process (None when it can)."""
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("g++")):
        return "torch.compile needs a C++ compiler (cc, gcc or g++ on PATH); none found"
    try:
        import torch._dynamo as dynamo

        if not dynamo.is_dynamo_supported():
            return (f"torch.compile does not support Python "
                    f"{sys.version_info.major}.{sys.version_info.minor} in this torch")
    except Exception as e:
        return f"torch.compile is unavailable: {type(e).__name__}: {e}"
    return None


class Injector:
    """Applies and records the overrides (see the module docstring). ``patch(owner,
    name, make)`` is the hooks' undoable patch; ``error(where, e)`` notes a failure."""

    def __init__(self, overrides: dict[str, Any],
                 patch: Callable[[Any, str, Callable[[Any], Any]], None],
                 error: Callable[[str, BaseException], None]) -> None:
        self.changes = {k: v for k, v in overrides.items() if k in KNOBS and k != "env"}
        self.applied: dict[str, str] = {}
        self.refused: dict[str, str] = {}
        self._patch, self._error = patch, error
        self.torch: Any = None
        self._pending = {k for k in MODEL_KNOBS if k in self.changes}
        self.active = bool(self._pending)  # model forwards need a look
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()  # models past their first
        self._cl: weakref.WeakSet[Any] = weakref.WeakSet()  # converted to channels_last
        self._autocast: tuple[str, Any] | None = None  # (device type, dtype)
        self._why: dict[str, str] = {}  # model knob -> why not, until one model takes it
        self.compiled = 0
        self.loaders = 0
        self._loader_knobs: dict[str, int] = {k: 0 for k in LOADER_KNOBS if k in self.changes}
        self._opts: list[str] = []
        self._opt_depth = 0

    # ------------------------------------------------------------ at import torch

    def install(self, torch: Any) -> None:
        self.torch = torch
        ch = self.changes
        if "cpu_threads" in ch:
            self.applied["cpu_threads"] = (f"torch.set_num_threads({ch['cpu_threads']}), "
                                           "kept over the script's own calls")
        if "interop_threads" in ch:
            n = int(ch["interop_threads"])
            self._try("interop_threads", lambda: torch.set_num_interop_threads(n),
                      f"torch.set_num_interop_threads({n})")
        if "seed" in ch:
            self._try("seed", lambda: self._seed(int(ch["seed"])), "")
        if "cudnn_benchmark" in ch:
            v = bool(ch["cudnn_benchmark"])

            def bench() -> None:
                torch.backends.cudnn.benchmark = v
            self._try("cudnn_benchmark", bench, f"torch.backends.cudnn.benchmark = {v}")
        if "lr_scale" in ch:
            self._try("lr_scale", self._patch_optimizer_init, "")
            self.applied.pop("lr_scale", None)  # noted once an optimizer is built
        if ch.get("precision") == "fp16":
            self._refuse("precision", FP16_REASON)
        if ch.get("precision") == "fp32":
            self.applied["precision"] = "fp32: PyTorch's default, nothing to change"
            self._pending.discard("precision")
        if ch.get("compile") == "off":
            self.applied["compile"] = "off: nothing to change"
            self._pending.discard("compile")
        elif "compile" in ch:
            why = compile_refusal()
            if why:
                self._refuse("compile", why)
        if ch.get("channels_last") is False:
            self.applied["channels_last"] = "false: nothing to change"
            self._pending.discard("channels_last")
        self.active = bool(self._pending)

    def _try(self, knob: str, fn: Callable[[], Any], what: str) -> None:
        try:
            fn()
        except Exception as e:
            self._refuse(knob, f"{type(e).__name__}: {e}")
            return
        if what:
            self.applied[knob] = what

    def _refuse(self, knob: str, why: str) -> None:
        self.refused[knob] = why
        self.applied.pop(knob, None)
        self._pending.discard(knob)
        self.active = bool(self._pending)

    def _seed(self, seed: int) -> None:
        import random

        self.torch.manual_seed(seed)
        random.seed(seed)
        done = ["torch", "random"]
        try:
            import numpy as np

            np.random.seed(seed % 2**32)
            done.append("numpy")
        except ImportError:
            pass
        self.applied["seed"] = f"{', '.join(done)} seeded with {seed}"

    # ------------------------------------------------------------ optimizers

    def _patch_optimizer_init(self) -> None:
        inj = self
        scale = float(self.changes["lr_scale"])

        def make(orig: Any) -> Any:
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                inj._opt_depth += 1
                try:
                    orig(self, *args, **kwargs)
                finally:
                    inj._opt_depth -= 1
                if inj._opt_depth == 0:  # an optimizer built inside another: once only
                    inj._scale_lr(self, scale)
            return __init__

        self._patch(self.torch.optim.Optimizer, "__init__", make)

    def _scale_lr(self, opt: Any, scale: float) -> None:
        try:
            done: set[int] = set()  # a tensor lr is shared by the defaults and the groups
            for holder in (opt.defaults, *opt.param_groups):
                lr = holder.get("lr")
                if lr is None or id(lr) in done:
                    continue
                if isinstance(lr, self.torch.Tensor):
                    with self.torch.no_grad():
                        lr.mul_(scale)
                    done.add(id(lr))
                else:
                    holder["lr"] = lr * scale
            self._opts.append(type(opt).__name__)
            self.applied["lr_scale"] = (f"lr x{scale:g} in {len(self._opts)} optimizer(s) "
                                        f"({', '.join(sorted(set(self._opts)))})")
        except Exception as e:
            self._error("lr_scale", e)

    # ------------------------------------------------------------ DataLoaders

    def loader_built(self, knobs: list[str]) -> None:
        """A DataLoader was built with these loader knobs applied."""
        self.loaders += 1
        for k in knobs:
            if k in self._loader_knobs:
                self._loader_knobs[k] += 1
                n = self._loader_knobs[k]
                self.applied[k] = f"{k}={self.changes[k]!r} in {n} DataLoader(s)"

    # ------------------------------------------------------------ model forwards

    def enter(self, module: Any, info: dict[str, Any], args: tuple[Any, ...],
              training: bool) -> tuple[tuple[Any, ...] | None, Any]:
        """At a root's forward: (new positional args or None, what :meth:`exit` takes)."""
        if not training:
            return None, None
        if info.get("role") != "model" or not info.get("has_params"):
            return None, self._enter_autocast()  # a loss in training: same autocast
        if module not in self._seen:
            self._seen.add(module)
            self._first_forward(module)
        new = None
        if module in self._cl:
            torch = self.torch
            new = tuple(a.contiguous(memory_format=torch.channels_last)
                        if isinstance(a, torch.Tensor) and a.dim() == 4 else a for a in args)
        return new, self._enter_autocast()

    def _enter_autocast(self) -> Any:
        if self._autocast is None:
            return None
        ctx = self.torch.autocast(self._autocast[0], dtype=self._autocast[1])
        ctx.__enter__()
        return ctx

    def exit(self, token: Any) -> None:
        if token is not None:
            token.__exit__(None, None, None)

    def _first_forward(self, module: Any) -> None:
        """A model's first training forward: decide and apply its knobs."""
        torch = self.torch
        param = next(module.parameters(), None)
        device = param.device.type if param is not None else "cpu"
        ch = self.changes
        if "precision" in self._pending:
            self._precision(ch["precision"], device)
        if "channels_last" in self._pending or ("channels_last" in self.applied
                                                and ch.get("channels_last")):
            if any(isinstance(m, torch.nn.Conv2d) for m in module.modules()):
                try:
                    module.to(memory_format=torch.channels_last)
                    self._cl.add(module)
                    self._done_model("channels_last", "model and its 4-D inputs in "
                                     f"channels_last ({len(self._cl)} model(s))")
                except Exception as e:
                    self._why["channels_last"] = f"{type(e).__name__}: {e}"
            else:
                self._why.setdefault("channels_last", "the model has no 2-D convolution")
        if "compile" in self._pending or ("compile" in self.applied and self.compiled):
            mode = ch["compile"]
            try:
                module.compile(**({} if mode == "default" else {"mode": mode}))
                self.compiled += 1
                self._done_model("compile", f"{type(module).__name__}.compile("
                                 + ("" if mode == "default" else f"mode={mode!r}")
                                 + f") in place ({self.compiled} model(s))")
            except Exception as e:
                self._why["compile"] = f"{type(e).__name__}: {e}"
        self.active = (bool(self._pending) or bool(self._cl) or bool(self.compiled)
                       or self._autocast is not None)

    def _done_model(self, knob: str, what: str) -> None:
        self.applied[knob] = what
        self._pending.discard(knob)

    def _precision(self, value: str, device: str) -> None:
        torch = self.torch
        self._pending.discard("precision")
        if value == "bf16":
            if device not in ("cpu", "cuda"):
                self.refused["precision"] = f"bf16 autocast is not set up for {device}"
                return
            self._autocast = (device, torch.bfloat16)
            self.applied["precision"] = (f"torch.autocast({device!r}, dtype=torch.bfloat16) "
                                         "around the training forwards")
        elif value == "tf32":
            if device != "cuda":
                self.refused["precision"] = (f"tf32 is a CUDA setting; this run's model is "
                                             f"on {device}")
                return
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.set_float32_matmul_precision("high")
            self.applied["precision"] = ("tf32: cuda.matmul.allow_tf32, cudnn.allow_tf32, "
                                         "float32_matmul_precision('high')")

    # ------------------------------------------------------------ the end

    def close(self) -> None:
        """Refuse every knob whose target never appeared (idempotent)."""
        for k in sorted(self._pending):
            self.refused[k] = self._why.get(k, NO_MODEL)
        self._pending.clear()
        for k, n in self._loader_knobs.items():
            if not n and k not in self.refused:
                self.refused[k] = NO_LOADER if not self.loaders else (
                    f"no DataLoader took it ({self.loaders} built: a batch_sampler replaces "
                    "batch_size; num_workers=0 drops prefetch_factor and persistent_workers)")
        if "lr_scale" in self.changes and not self._opts and "lr_scale" not in self.refused:
            self.refused["lr_scale"] = NO_OPTIMIZER

    def section(self, final: bool) -> dict[str, Any]:
        """``{"applied": {knob: what}, "refused": {knob: why}}``; before the end, knobs
        still waiting for their target are in neither."""
        if final:
            self.close()
        return {"applied": dict(self.applied), "refused": dict(self.refused)}
