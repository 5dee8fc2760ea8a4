"""Run a Python script (or a workload) with perfpilot's probes installed.

Usage (normally through ``perfpilot profile``)::

    PERFPILOT_PROFILE='{"out": "raw.json"}' python -m perfpilot.probes.bootstrap script.py ARGS
    ... python -m perfpilot.probes.bootstrap -m package.module ARGS
    ... python -m perfpilot.probes.bootstrap -c "code" ARGS

The script runs unmodified in this process (``runpy``), as ``__main__``, with ``sys.argv``
and ``sys.path[0]`` as ``python script.py`` would set them. The stack sampler starts
first; the torch hooks are installed the moment the script imports torch (so a script
that sets ``OMP_NUM_THREADS`` before importing torch behaves as usual). A *raw* profile
(JSON, see :mod:`perfpilot.probes.assemble`) is written every few seconds and at exit,
so a crash keeps what ran. The exit code is the script's; its output is untouched.

When a ``--steps``/``--duration`` window is over, nothing is raised into the script: the
final profile is written, then the process ends from outside (exit code 0, see
:mod:`perfpilot.probes.window_end`), or, with ``keep_running``, the probes come off and
the script runs on unwatched to its own end (its exit code then goes into the profile).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field, fields
from typing import Any

from perfpilot.probes.cpu import CpuProbe
from perfpilot.probes.memory import MemoryProbe
from perfpilot.probes.sampler import DEFAULT_INTERVAL_S, StackSampler
from perfpilot.probes.steps import StepTracker
from perfpilot.probes.target import (
    error_info,
    exit_code_of,
    is_user_error,
    run_target,
    user_traceback,
)
from perfpilot.record_probe_sections import CpuUse

ENV = "PERFPILOT_PROFILE"
SWITCH_INTERVAL_S = 0.0005
RAW_FORMAT = "perfpilot.profile-raw/1"


DEADLINE_GRACE_S = 1.0  # past --duration with no step boundary: end the window anyway


@dataclass(frozen=True)
class ProbeConfig:
    """What the parent asks of the runner (JSON in the ``PERFPILOT_PROFILE`` variable)."""

    out: str
    interval_s: float = DEFAULT_INTERVAL_S
    steps: int | None = None
    duration_s: float | None = None
    window: bool = True
    window_steps: int = 3
    overrides: dict[str, Any] = field(default_factory=dict)
    save_every_s: float = 10.0  # partial saves: what a SIGKILL or os._exit leaves
    measure_nograd: bool = True
    calibrate: bool = True
    workload: str | None = None
    plan: str | None = None
    sampler: bool = True  # off only to measure the other probes' cost (benchmarks)
    hooks: bool = True
    usable_cores: int | None = None  # measured by the parent (same machine and cgroup)
    switch_interval_s: float = SWITCH_INTERVAL_S  # 0: leave the interpreter's as it is
    keep_running: bool = False  # after the window: let the script run on, unwatched
    follow_children: bool = True  # probes in spawned children too (DDP ranks)

    @classmethod
    def from_env(cls) -> ProbeConfig:
        raw = os.environ.get(ENV)
        if not raw:
            raise SystemExit(f"perfpilot.probes.bootstrap: set {ENV} "
                             "(run it via perfpilot profile)")
        data = json.loads(raw)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _process_start(now_pc: float) -> float:
    """Process creation time on the perf_counter clock (Linux /proc; else ``now_pc``).

    psutil's create_time is avoided: it derives boot time from the wall clock and was
    observed off by most of a second in containers.
    """
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now_pc
    return now_pc - min(max(age, 0.0), 60.0)


class Session:
    """Everything one profiled run owns: tracker, sampler, probes, and the raw output."""

    def __init__(self, cfg: ProbeConfig, argv: list[str], follow: bool = True) -> None:
        self.cfg, self.argv = cfg, argv
        # spawned children get probes too (probes.children); never a child's children
        self.follow = follow and cfg.follow_children and not cfg.workload
        self.rank: int | None = None  # set in a followed child (its spawn rank)
        self._unfollow: Any = None
        self.probe_errors: list[str] = []  # probe failures outside the torch hooks
        self.clock = time.perf_counter
        now = self.clock()
        self.origin = _process_start(now)
        self.tracker = StepTracker(self.clock, process_start=self.origin)
        self.memory = MemoryProbe(self.clock)
        self.cpu = CpuProbe(self.clock)
        self.hooks: Any = None
        self.window: Any = None
        self.cuda: Any = None
        self.torch: Any = None
        self.steady_count: dict[str, int] = {}
        self.stop_reason = ""
        self._window_over = False
        self._watcher: _ImportWatcher | None = None
        self._save_lock = threading.Lock()
        self._final = False
        self._final_raw: dict[str, Any] | None = None
        periodic: list[tuple[float, Any]] = [(0.1, self.memory.sample),
                                             (0.5, self._sample_cuda),
                                             (0.5, self._sample_cpu),
                                             (0.5, self._watch_deadline)]
        if cfg.save_every_s > 0:
            periodic.append((cfg.save_every_s, self._save_partial))
        self.sampler = StackSampler(cfg.interval_s, tag=self.tracker.tag, periodic=periodic)

    # ------------------------------------------------------------ start

    def start(self) -> None:
        self.memory.sample()
        self.cpu.sample()
        if not self.cfg.sampler:  # periodic work only, no stack samples
            self.sampler.enabled, self.sampler.interval_s = False, 0.05
        # A sampler thread gets the GIL from running Python only after the switch
        # interval; with the default 5 ms, Python sections shorter than that are
        # attributed to the next line that releases the GIL (a torch op). 0.5 ms keeps
        # the attribution on the right line (measured overhead: docs/profile.md).
        self._switch = sys.getswitchinterval()
        if self.cfg.switch_interval_s > 0:
            sys.setswitchinterval(min(self._switch, self.cfg.switch_interval_s))
        self.sampler.start()
        if self.follow:
            try:
                from dataclasses import asdict

                from perfpilot.probes.children import follow_spawned

                self._unfollow = follow_spawned(asdict(self.cfg))
            except Exception as e:  # the script runs as usual, its children unwatched
                self.probe_errors.append(f"following children: {type(e).__name__}: {e}")
        if "torch" in sys.modules:
            self.on_torch(sys.modules["torch"])
        else:
            self._watcher = _ImportWatcher("torch", self.on_torch)
            sys.meta_path.insert(0, self._watcher)

    def on_torch(self, torch: Any) -> None:
        """Install the torch probes (called right after the script imports torch)."""
        from perfpilot.probes.hooks import TorchHooks
        from perfpilot.probes.opwindow import OpWindow

        self.torch = torch
        if not self.cfg.hooks or self._final:
            return
        self.hooks = TorchHooks(self.tracker, overrides=self.cfg.overrides,
                                measure_nograd=self.cfg.measure_nograd)
        self.hooks.install()
        self.hooks.on_boundary.append(self._on_boundary)
        cuda = torch.cuda.is_available()
        if self.cfg.window:
            self.window = OpWindow(self.tracker, steps=self.cfg.window_steps, cuda=cuda)
            self.hooks.on_boundary.append(self.window.on_boundary)
        if cuda:
            from perfpilot.probes.cuda import CudaProbe

            self.cuda = CudaProbe(torch, lambda: self.tracker.warmup_end is not None)
            self.cuda.install()

    # ------------------------------------------------------------ window limits

    def _on_boundary(self, kind: str) -> None:
        if not (self.cfg.steps or self.cfg.duration_s) or self.cfg.workload:
            return  # the common case, on every boundary: keep it cheap
        if self.tracker.warmup_end is None or self._window_over:
            return
        # Count what the record will count as steady: a step that began after warm-up
        # ended, outside the profiler window (--steps N means N such steps).
        if not self.tracker.profiling and self.tracker.closed_step_steady(kind):
            self.steady_count[kind] = self.steady_count.get(kind, 0) + 1
        n = self.tracker.boundaries()
        best = ("optimizer" if self.hooks.optimizers else "backward" if n["backward"] else
                "data" if n["data"] else "forward")
        if self.cfg.steps and kind == best and self.steady_count.get(kind, 0) >= self.cfg.steps:
            self.end_window("steps")
            return
        deadline = self._deadline()
        if deadline is not None and self.clock() >= deadline:
            self.end_window("duration")

    def _deadline(self) -> float | None:
        if not self.cfg.duration_s or self.cfg.workload:
            return None
        # The window counts from the first step: start-up (imports, data preparation) may
        # take any time on a loaded machine, and ending during `import torch` measures
        # nothing. A script that never imports torch has no steps to wait for: its window
        # counts from its start ("torch" is in sys.modules from the start of its import).
        start = self.tracker.first_activity
        if start is None and "torch" not in sys.modules:
            start = self.tracker.script_start
        return None if start is None else start + self.cfg.duration_s

    def _watch_deadline(self) -> None:
        deadline = self._deadline()
        if (deadline is not None and not self._window_over
                and self.clock() > deadline + DEADLINE_GRACE_S):
            # No step boundary came to end the window at: end it from this thread.
            self.end_window("duration", in_main=False)

    def end_window(self, reason: str, in_main: bool = True) -> None:
        """The --steps/--duration window is over: write the final profile, then end the
        process (or, with ``keep_running``, take the probes off and return). Called at a
        step boundary in the main thread, or by the sampler thread when the main thread
        reaches none; never raises."""
        if self._window_over:
            return
        self._window_over = True
        self.stop_reason = reason
        keep = self.cfg.keep_running
        try:
            # From another thread the main thread still runs: no calibration beside it.
            self.finish({"exit_code": None if keep else 0, "stopped": reason, "error": None},
                        calibrate=in_main)
        except Exception as e:
            print(f"perfpilot: could not write the profile: {type(e).__name__}: {e}",
                  file=sys.stderr)
        what = (f"--steps {self.cfg.steps}" if reason == "steps" else
                f"--duration {self.cfg.duration_s:g} s")
        from perfpilot.probes.window_end import flush_user_output, hard_exit

        flush_user_output()
        if keep:
            print(f"perfpilot: the {what} window is over; the script runs on unwatched "
                  "(--keep-running)", file=sys.stderr, flush=True)
            return
        print(f"perfpilot: the {what} window is over: the profile is written and perfpilot "
              "ended the script here (exit code 0); --keep-running lets it run to its end",
              file=sys.stderr, flush=True)
        hard_exit(0)

    def _sample_cpu(self) -> None:
        self.cpu.sample(self.tracker.warmup_end)

    def _sample_cuda(self) -> None:
        if self.cuda is not None:
            self.cuda.sample_util()

    # ------------------------------------------------------------ output

    def raw(self, outcome: dict[str, Any]) -> dict[str, Any]:
        """The raw profile (see :mod:`perfpilot.probes.assemble` for its use)."""
        hooks = self.hooks.section() if self.hooks else None
        tracker = self.tracker.export(self.origin)
        steps_n = len([s for s in tracker["steps"] if not s["excluded"]])
        warm = self.tracker.warmup_end
        out: dict[str, Any] = {
            "format": RAW_FORMAT, "argv": self.argv, "cwd": os.getcwd(),
            "mode": "workload" if self.cfg.workload else "script",
            "config": {k: getattr(self.cfg, k) for k in ("interval_s", "steps", "duration_s",
                                                         "window", "overrides", "workload",
                                                         "plan", "keep_running")},
            "partial": not self._final, **outcome, "tracker": tracker,
            "stacks": _compact_stacks(self.sampler.section()), "hooks": hooks,
            "memory": self.memory.section(warm, self.origin, steps_n),
            "cpu": self._cpu_section(),
            "torch_imported": self.torch is not None, "rank": self.rank,
            "probe_errors": list(self.probe_errors),
        }
        if self.window is not None and self._final:
            out["hot_ops"] = self.window.section()
        if self.cuda is not None and self._final:
            out["cuda"] = self.cuda.section()
            from perfpilot.probes.memory import cuda_memory

            out["cuda"]["memory"] = cuda_memory(self.torch)
        return out

    def _cpu_section(self) -> dict[str, Any]:
        from perfpilot.probes.threads import usable_cores

        self._sample_cpu()
        # The steady window ends at the last step activity, not after the script's tail.
        return self.cpu.section(self.cfg.usable_cores or usable_cores(),
                                until=self.tracker.last_activity)

    def _write(self, data: dict[str, Any]) -> None:
        with self._save_lock:
            tmp = self.cfg.out + ".tmp"
            with open(tmp, "w") as f:
                json.dump(data, f, default=str)
            os.replace(tmp, self.cfg.out)

    def _save_partial(self) -> None:
        if self._final:
            return
        for _ in range(3):  # the main thread may mutate a dict while we copy it
            try:
                self._write(self.raw({"exit_code": None, "stopped": "running"}))
                return
            except RuntimeError:
                continue

    def finish(self, outcome: dict[str, Any], calibrate: bool = True) -> None:
        """Stop every probe, run calibrations, and write the final raw profile. Called
        again after the window (``keep_running``), it only records how the script ended."""
        if self._final:
            if self._final_raw is not None:
                self._final_raw.update(exit_code=outcome.get("exit_code"),
                                       error=outcome.get("error"))
                self._write(self._final_raw)
            return
        if self._watcher is not None and self._watcher in sys.meta_path:
            sys.meta_path.remove(self._watcher)
        if self._unfollow is not None:
            self._unfollow()
        self.tracker.finish(outcome.get("stopped", "end"))
        if self.window is not None:
            self.window.close()
        self.sampler.stop()
        sys.setswitchinterval(self._switch)
        if self.hooks is not None:
            self.hooks.uninstall()
        if self.cuda is not None:
            self.cuda.uninstall()
        self._final = True
        outcome = dict(outcome)
        outcome["threads"], outcome["calibration"] = self._threads_and_calibration(calibrate)
        for attempt in range(3):  # another thread may mutate a dict while it is copied
            try:
                self._final_raw = self.raw(outcome)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self._write(self._final_raw or {})

    def _threads_and_calibration(self, calibrate: bool = True
                                 ) -> tuple[dict[str, Any], dict[str, Any]]:
        from perfpilot.probes import threads

        loaders = self.hooks.section()["loaders"] if self.hooks else []
        facts = threads.thread_facts(self.torch, loaders, self.cfg.usable_cores)
        cal: dict[str, Any] = {}
        if (self.torch is None or not self.cfg.calibrate or not calibrate
                or self.tracker.first_activity is None):
            return facts, cal
        t0 = self.clock()
        try:
            cal["op_overhead_s"] = threads.op_overhead_s(self.torch)
            cur, cores = facts.get("torch_threads", 1), facts["usable_cores"]
            cpu = CpuUse.from_dict(self._cpu_section())
            free = cpu.free_cores(cores)
            if cur > free:  # more threads than cores, or than the load leaves free
                fewer = sorted({c for c in (free, 1) if c < cur}, reverse=True)
                cal["threads"] = threads.calibrate_threads(self.torch, cur, fewer)
                if free < cores:
                    cal["threads"].update(free_cores=free, other_cores=cpu.other_cores,
                                          worker_cores=cpu.worker_cores)
            if self.cuda is not None and _fp32_gemm(self.window):
                from perfpilot.probes.cuda import calibrate_matmul

                cal["matmul"] = calibrate_matmul(self.torch)
        except Exception as e:
            cal["error"] = f"{type(e).__name__}: {e}"
        cal["seconds"] = self.clock() - t0
        return facts, cal


def _fp32_gemm(window: Any) -> bool:
    if window is None or window.state != "done":
        return False
    facts = window.section().get("cuda") or {}
    return facts.get("gemm_s", 0) > facts.get("gemm_tensor_core_s", 0)


def _compact_stacks(section: dict[str, Any]) -> dict[str, Any]:
    """Frames as ``[file_index, line, function]`` with a file table (smaller, faster JSON)."""
    files: dict[str, int] = {}
    stacks = []
    for s in section["stacks"]:
        frames = [[files.setdefault(f, len(files)), ln, fn] for f, ln, fn in s["frames"]]
        stacks.append({**s, "frames": frames})
    return {**section, "files": list(files), "stacks": stacks}


class _ImportWatcher:
    """A meta-path finder that calls ``callback(module)`` once ``name`` has been imported."""

    def __init__(self, name: str, callback: Any) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module
        callback = self.callback

        def exec_and_notify(module: Any) -> None:
            exec_module(module)
            try:
                callback(module)
            except Exception as e:  # the script must run even if a probe cannot
                print(f"perfpilot: torch probes not installed: {type(e).__name__}: {e}",
                      file=sys.stderr)

        spec.loader.exec_module = exec_and_notify  # type: ignore[method-assign]
        return spec


def _sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = ProbeConfig.from_env()
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm)  # so a terminated run still writes its record
    session = Session(cfg, argv)
    outcome: dict[str, Any] = {"exit_code": 0, "stopped": "end", "error": None}
    session.start()
    try:
        engine_record = run_target(argv, cfg)
        if engine_record is not None:
            outcome["engine_record"] = engine_record
    except SystemExit as e:
        outcome["exit_code"] = exit_code_of(e.code)
        if outcome["exit_code"]:
            outcome["stopped"] = "exit"
    except KeyboardInterrupt as e:  # the user's Ctrl-C (perfpilot never interrupts)
        traceback.print_exception(type(e), e, None)
        outcome.update(exit_code=130, stopped="interrupt", error=error_info(e))
    except BaseException as e:
        if cfg.workload and is_user_error(e):  # perfpilot's own one-line error, exit 2
            print(f"error: {e}", file=sys.stderr)
            outcome.update(exit_code=2, stopped="crash", error=error_info(e), user_error=True)
        else:
            sys.stderr.write(user_traceback(e))
            outcome.update(exit_code=1, stopped="crash", error=error_info(e))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            session.finish(outcome)
        except Exception as e:
            print(f"perfpilot: could not write the profile: {type(e).__name__}: {e}",
                  file=sys.stderr)
    return int(outcome["exit_code"])


if __name__ == "__main__":
    sys.exit(main())
