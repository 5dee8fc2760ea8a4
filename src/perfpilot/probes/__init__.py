"""perfpilot.probes: measure an unmodified training script (or a workload) from inside.

Pipeline (``perfpilot profile``): :mod:`.launch` starts ``python -m
perfpilot.probes.bootstrap script.py ARGS`` (:mod:`.runner`), which runs the script under
the probes and writes a *raw* profile; :mod:`.assemble` turns it into a
:class:`~perfpilot.record.RunRecord`; :mod:`.verify` re-runs with a fix applied.

Probes (they measure; they know nothing about rules or rendering):

* :mod:`.sampler`  in-process stack sampler (all threads, line level, Python vs native)
* :mod:`.hooks`    torch hooks: DataLoader, root-module forwards, backward, optimizer,
                   I/O calls, ``set_num_threads``; loader/thread overrides for --verify
* :mod:`.steps`    step boundaries, phases, evaluation segments, warm-up (pure logic)
* :mod:`.opwindow` a short kineto window: top operators, CUDA kernel facts
* :mod:`.memory`   RSS series, peak, growth; CUDA allocator peaks
* :mod:`.threads`  thread counts vs usable cores, thread and op-dispatch calibrations
* :mod:`.cuda`     syncs, host-to-device copies, NVML utilization, matmul calibration
* :mod:`.frames`   what counts as user code, call sites

Nothing here is imported by ``import perfpilot``; the runner imports torch-dependent
modules only once the script has imported torch.
"""
