"""Root-module forwards, the part of :class:`~perfpilot.probes.hooks.TorchHooks` (a mixin)
that times the model's forward and tells training from evaluation.

A *root* is a module called while no other module runs (the model, a loss module).
Global module hooks find the roots during warm-up (they put every submodule call on
PyTorch's slow path, so they come off after warm-up and back for one step every
``REDISCOVER_EVERY`` boundaries). After that, a root is timed by a wrapper around its
**class's** ``__call__``, never by hooks on the instance: a module's hook dicts are part
of its pickled and deep-copied state, so instance hooks made ``torch.save(model)`` and
``copy.deepcopy(model)`` fail (and would carry perfpilot into a loaded model). The wrapper
holds the roots by ``id`` plus a weak reference, so nothing perfpilot owns is reachable
from the user's objects, and other instances of the class pass straight through.

Roles: a root with parameters is the *model*; a loss class (``torch.nn`` ``_Loss``) or a
parameter-free module is a *loss*: its time is forward time but it starts no step.

Batch dimension (samples per step): dim 0 of the model's first input (its first
keyword argument when it is called with keywords only, as ``model(**batch)`` in Hugging
Face's ``Trainer``: the global pre-hook sees no keywords, so during discovery the class
wrapper hands them over), unless the model
holds a sequence-first module (``RNN``/``LSTM``/``GRU``, ``Transformer*``,
``MultiheadAttention`` with ``batch_first=False``), whose batch is dim 1. During
discovery the guess is checked once against that module's own input (a model that
transposes a batch-first input before its LSTM keeps dim 0).
"""

from __future__ import annotations

import weakref
from threading import get_ident
from typing import Any

from perfpilot.probes.loader_hooks import batch_size_of


def _seq_first_module(module: Any) -> Any:
    """The first sequence-first submodule (batch at dim 1 of its input), or None."""
    from torch import nn

    kinds = (nn.RNNBase, nn.MultiheadAttention, nn.Transformer,
             nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
    for m in module.modules():
        if isinstance(m, kinds) and getattr(m, "batch_first", True) is False:
            return m
    return None


def _is_loss(module: Any, has_params: bool) -> bool:
    from torch.nn.modules.loss import _Loss

    return isinstance(module, _Loss) or not has_params


def _first_shape(args: Any) -> tuple[int, ...] | None:
    for a in args[:4] if isinstance(args, tuple) else ():
        shape = getattr(a, "shape", None)
        if shape is not None:
            return tuple(int(d) for d in shape)
    return None


class RootHooks:
    """Needs ``t``, ``torch``, ``roots``, ``_main``, ``_error``, ``_probing``, ``closed``
    and ``_root_begin``/``_root_end`` from the class it is mixed into."""

    t: Any
    torch: Any
    roots: dict[int, dict[str, Any]]
    _main: int | None
    _probing: bool
    closed: bool
    inj: Any  # perfpilot.probes.inject.Injector: the overrides applied at model forwards
    _inj_token: Any

    def _error(self, where: str, e: BaseException) -> None:  # pragma: no cover
        raise NotImplementedError

    def _root_begin(self, module: Any, args: Any,
                    kwargs: dict[str, Any] | None = None) -> None:  # pragma: no cover
        raise NotImplementedError

    def _root_end(self, module: Any, args: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    def _init_roots(self) -> None:
        self._depth = 0
        self._active: Any = None  # the root module whose forward is running
        self._active_local = False  # timed by the class wrapper (not the global hooks)
        self._global: list[Any] = []
        self._refs: dict[int, weakref.ref[Any]] = {}  # root id -> the root, weakly
        self._classes: dict[type, tuple[Any, Any]] = {}  # patched class -> (own, wrapper)
        # root id -> (id, class name) of its sequence-first module, until checked
        self._seq: dict[int, tuple[int, str]] = {}
        # while a root's forward runs: (root id, its info, seq module id, name, input shape)
        self._dim_check: tuple[int, dict[str, Any], int, str, tuple[int, ...]] | None = None
        self._kw: tuple[int, dict[str, Any]] | None = None  # (root id, its keyword args)

    # ------------------------------------------------------------ discovery

    def _enable_global(self) -> None:
        from torch.nn.modules import module as m

        if self._global or self.closed:
            return
        self._depth = 0
        self._global = [m.register_module_forward_pre_hook(self._gpre),
                        m.register_module_forward_hook(self._gpost, always_call=True)]

    def _disable_global(self) -> None:
        for h in self._global:
            h.remove()
        self._global = []

    def _gpre(self, module: Any, args: Any) -> Any:
        if get_ident() != self._main or self.closed:
            return None
        new = None
        try:
            if self._depth == 0 and self._active is None and not self._probing:
                info = self._adopt(module)
                self._active, self._active_local = module, False
                self._start_dim_check(module, info, args)
                kw = self._kw[1] if self._kw is not None and self._kw[0] == id(module) else None
                self._root_begin(module, args, kw)
                new = self._inject_enter(module, info, args)  # replaces the args if not None
            elif self._dim_check is not None and id(module) == self._dim_check[2]:
                self._finish_dim_check(args)
        except Exception as e:
            self._error("forward", e)
        self._depth += 1
        return new

    def _gpost(self, module: Any, args: Any, out: Any) -> None:
        if get_ident() != self._main:
            return
        self._depth = max(self._depth - 1, 0)
        if (self._depth == 0 and self._active is module and not self._active_local
                and not self._probing):
            self._active = None
            self._dim_check = None
            self._inject_exit()
            self._root_end(module, args)

    def _adopt(self, module: Any) -> dict[str, Any]:
        key = id(module)
        info = self.roots.get(key)
        ref = self._refs.get(key)
        if info is not None and ref is not None and ref() is module:
            return info
        has_params = any(True for _ in module.parameters())
        loss = _is_loss(module, has_params)
        seq = None if loss else _seq_first_module(module)
        info = {"type": type(module).__name__, "has_params": has_params,
                "role": "loss" if loss else "model", "calls": 0,
                "batch_dim": 1 if seq is not None else 0,
                "batch_dim_from": (f"dim 1 of the input: holds a sequence-first "
                                   f"{type(seq).__name__} (batch_first=False)"
                                   if seq is not None else "dim 0 of the input")}
        if seq is not None:
            self._seq[key] = (id(seq), type(seq).__name__)
        self.roots[key] = info
        self._refs[key] = weakref.ref(module)
        self._wrap_class(type(module))
        return info

    # ------------------------------------------------------------ the class wrapper

    def _wrap_class(self, cls: type) -> None:
        if cls in self._classes:
            return
        hooks = self
        orig = cls.__call__  # what instances call now (the class's own or inherited)

        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            h = hooks
            if (h._global and h.inj is not None and h.inj.compiled and h._active is None
                    and not h.closed and get_ident() == h._main):
                h._disable_global()  # a compiled model must not run under global hooks
            if (h._active is None and not h._global and not h._probing and not h.closed
                    and get_ident() == h._main):
                ref = h._refs.get(id(self))
                if ref is not None and ref() is self:
                    return h._root_call(self, orig, args, kwargs)
            elif (kwargs and h._global and h._active is None and not h.closed
                  and get_ident() == h._main):
                prev, h._kw = h._kw, (id(self), kwargs)  # for the global pre-hook
                try:
                    return orig(self, *args, **kwargs)
                finally:
                    h._kw = prev
            return orig(self, *args, **kwargs)

        __call__.__wrapped__ = orig  # type: ignore[attr-defined]
        try:
            own = cls.__dict__.get("__call__")
            cls.__call__ = __call__  # type: ignore[method-assign]
        except (TypeError, AttributeError) as e:  # a class that refuses: untimed roots
            self._error(f"forward ({cls.__name__})", e)
            return
        self._classes[cls] = (own, __call__)

    def _root_call(self, module: Any, orig: Any, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> Any:
        self._active, self._active_local = module, True
        self._root_begin(module, args, kwargs)  # catches its own failures
        new = self._inject_enter(module, self.roots.get(id(module)) or {}, args)
        try:
            return orig(module, *(args if new is None else new), **kwargs)
        finally:
            if self._active is module:
                self._active = None
                self._inject_exit()
                self._root_end(module, args)

    # ------------------------------------------------------------ injection

    def _inject_enter(self, module: Any, info: dict[str, Any],
                      args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Apply the overrides at a root's forward (see :mod:`perfpilot.probes.inject`);
        the new positional args, or None. A failure is a note, never the script's."""
        inj = self.inj
        if inj is None or not inj.active or self._probing:
            return None
        try:
            training = bool(module.training) and self.torch.is_grad_enabled()
            new, self._inj_token = inj.enter(module, info, args, training)
            return new
        except Exception as e:
            self._error("inject", e)
            return None

    def _inject_exit(self) -> None:
        token, self._inj_token = self._inj_token, None
        if token is not None:
            try:
                self.inj.exit(token)
            except Exception as e:
                self._error("inject", e)

    def _unwrap_classes(self) -> None:
        for cls, (own, wrapper) in reversed(list(self._classes.items())):
            if cls.__dict__.get("__call__") is not wrapper:
                continue  # someone patched it after us: ours passes through (closed)
            try:
                if own is None:
                    delattr(cls, "__call__")
                else:
                    cls.__call__ = own  # type: ignore[method-assign]
            except (TypeError, AttributeError):
                pass
        self._classes = {}

    # ------------------------------------------------------------ batch dimension

    def batch_of(self, info: dict[str, Any] | None, args: Any,
                 kwargs: dict[str, Any] | None = None) -> int | None:
        """Samples in a root's input: its batch dimension (see the module docstring)."""
        dim = info.get("batch_dim", 0) if info is not None else 0
        n = batch_size_of(args, dim=dim)
        return batch_size_of(kwargs, dim=dim) if n is None and kwargs else n

    def _start_dim_check(self, module: Any, info: dict[str, Any], args: Any) -> None:
        seq = self._seq.get(id(module))
        shape = _first_shape(args)
        if seq is not None and shape is not None and len(shape) >= 2:
            self._dim_check = (id(module), info, seq[0], seq[1], shape)

    def _finish_dim_check(self, args: Any) -> None:
        """The sequence-first module's own input says where the batch is (dim 1 there)."""
        if self._dim_check is None:
            return
        key, info, _, name, root_shape = self._dim_check
        self._dim_check = None
        inner = _first_shape(args if isinstance(args, tuple) else (args,))
        if inner is None or len(inner) < 3:
            return  # unbatched or packed: keep the guess (checked again next time)
        self._seq.pop(key, None)
        batch = inner[1]
        if root_shape[1] == batch:
            info["batch_dim"] = 1
            info["batch_dim_from"] = f"dim 1 of the input (checked at the {name}'s input)"
        elif root_shape[0] == batch:
            info["batch_dim"] = 0
            info["batch_dim_from"] = (f"dim 0 of the input (the model transposes it for "
                                      f"its sequence-first {name})")
