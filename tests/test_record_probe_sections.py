"""The probes' typed record sections: JSON round trips, the probes' own output read without
loss, and schema-2 records written before the sections (and findings) were typed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from test_diagnose_rules import SCRIPT, record
from test_probes_hooks import hooked, loop  # noqa: F401  (hooked is a fixture)
from test_probes_window import Ev

from perfpilot.diagnose import facts_of
from perfpilot.diagnose.cuda import gpu_idle
from perfpilot.diagnose.loader import dataloader_bound
from perfpilot.diagnose.loop import grad_in_eval, io_in_loop
from perfpilot.diagnose.threads import thread_oversubscription
from perfpilot.probes.opwindow import summarize_events
from perfpilot.record import Finding, LintDetail, LoopSpan, Measure, RunRecord
from perfpilot.record_probe_sections import (
    Calibration,
    CudaInfo,
    GpuMemory,
    GpuUtilization,
    GradInEval,
    GradInEvalCall,
    HostToDevice,
    HotOp,
    HotOps,
    IoCall,
    KernelFacts,
    LoaderInfo,
    MatmulCalibration,
    OptimizerInfo,
    RootModule,
    SetThreadsCall,
    Sync,
    ThreadCalibration,
    site_of,
)

OLD = Path(__file__).parent / "fixtures" / "runrecord_v2_dict_sections.json"
SITE = (SCRIPT, 20, "main")


def plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists)."""
    return json.loads(json.dumps(value))


FILLED = dict(
    loaders=(LoaderInfo(id=7, dataset="TensorDataset", dataset_len=64, batch_size=8,
                        num_workers=2, pin_memory=True, persistent_workers=True,
                        prefetch_factor=2, site=SITE, batches=8, samples=64, fetch_s=0.5,
                        iters=1, iter_s=0.1, role="train"),
             LoaderInfo(role="unused")),
    io=(IoCall(call="torch.save", kind="write", site=SITE, phase="steady", count=3,
               seconds=0.2),),
    roots=(RootModule(type="Net", has_params=True, calls=9),),
    optimizers=(OptimizerInfo(type="SGD", steps=8, groups=1),),
    set_num_threads=(SetThreadsCall(value=16, site=SITE), SetThreadsCall(value=1)),
    grad_in_eval=GradInEval(calls=(GradInEvalCall(module="Net", site=SITE, calls=5,
                                                  then_backward=1),),
                            grad_over_nograd=(1.4, 1.6)),
    hot_ops=HotOps(state="done", window_s=0.3, steps=3, kind="optimizer",
                   ops=(HotOp(name="aten::addmm", count=6, total_s=0.1, self_s=0.08,
                              per_step=2.0),
                        HotOp(name="sm90_gemm", device="cuda", count=6, total_s=0.05,
                              self_s=0.05, per_step=2.0)),
                   cpu_self_s=0.08, aten_ops_per_step=40.0,
                   cuda=KernelFacts(kernel_s=0.05, memcpy_s={"Memcpy HtoD": 0.01},
                                    pageable_h2d_s=0.01, gemm_s=0.05,
                                    gemm_kernels=("sm90_gemm",))),
    cuda=CudaInfo(device="NVIDIA H100", capability=(9, 0), total_memory_bytes=80 * 2**30,
                  float32_matmul_precision="highest",
                  syncs=(Sync(site=SITE, steady=True, count=4), Sync(count=1)),
                  h2d=HostToDevice(copies=3, bytes=300, pageable_bytes=200, pageable_copies=2,
                                   blocking_copies=3, sites={f"{SCRIPT}:20": 2}),
                  utilization=GpuUtilization(samples=5, mean=42.0), errors=("nvml: x",),
                  memory=GpuMemory(device=0, max_allocated_bytes=2**30, total_bytes=2**36)),
    calibration=Calibration(op_overhead_s=1e-5, seconds=2.0, error=None,
                            threads=ThreadCalibration(current=16, target=4, factor=1.8,
                                                      ci_low=1.5, ci_high=2.1, n=5,
                                                      tried={"4": 1.8, "1": 1.2}),
                            matmul=MatmulCalibration(size=4096, fp32_s=0.03, tf32_s=0.01,
                                                     bf16_s=0.005, tf32_factor=3.0,
                                                     bf16_factor=6.0)),
)


def test_every_probe_section_round_trips_through_a_record():
    rec = dataclasses.replace(record(), **FILLED)
    d = plain(rec.to_dict())
    assert d["loaders"][0]["site"] == list(SITE)  # the probes' JSON shape
    assert d["cuda"]["capability"] == [9, 0] and d["hot_ops"]["ops"][1]["device"] == "cuda"
    back = RunRecord.from_dict(d)
    assert back == rec
    for name, value in FILLED.items():
        assert getattr(back, name) == value
    assert plain(back.to_dict()) == d


@pytest.mark.parametrize("section", [v for vs in FILLED.values()
                                     for v in (vs if isinstance(vs, tuple) else (vs,))])
def test_each_section_reads_its_own_json_and_ignores_unknown_keys(section):
    d = plain(section.to_dict())
    assert type(section).from_dict(d) == section
    assert type(section).from_dict({**d, "from_a_newer_perfpilot": 1}) == section


def test_empty_sections_mean_not_measured():
    rec = record()
    assert not rec.cuda.measured and rec.hot_ops.state == "not run"
    assert rec.calibration.threads is None and rec.hot_ops.cuda is None
    back = RunRecord.from_dict({**rec.to_dict(), "cuda": {}, "hot_ops": None, "io": None})
    assert back.cuda == CudaInfo() and back.hot_ops == HotOps() and back.io == ()
    assert site_of(None) is None and site_of(["/a.py", "3"]) == ("/a.py", 3, "")


def test_the_hooks_output_reads_into_the_sections_without_loss(hooked, tmp_path):  # noqa: F811
    tracker, hooks = hooked
    loop(tmp_path)
    tracker.finish()
    sec = plain(hooks.section())
    for key, cls in (("loaders", LoaderInfo), ("io", IoCall), ("roots", RootModule),
                     ("optimizers", OptimizerInfo), ("set_num_threads", SetThreadsCall)):
        for item in sec[key]:
            assert plain(cls.from_dict(item).to_dict()) == item, key
    assert plain(GradInEval.from_dict(sec["grad_in_eval"]).to_dict()) == sec["grad_in_eval"]
    train = LoaderInfo.from_dict(sec["loaders"][0])
    assert train.role == "train" and train.site[0] == str(Path(loop.__code__.co_filename))


def test_the_operator_window_output_reads_into_hot_ops_without_loss():
    events = [Ev("aten::addmm", 0, 100), Ev("Memcpy HtoD (Pageable -> Device)", 0, 400, "CUDA"),
              Ev("sm80_xmma_gemm_tf32f32_tf32f32", 500, 200, "CUDA")]
    raw = plain({"state": "done", "error": None, "window_s": 0.1, "steps": 1,
                 "kind": "optimizer", **summarize_events(events, steps=1)})
    ops = HotOps.from_dict(raw)
    assert plain(ops.to_dict()) == raw
    assert ops.cuda.gemm_tensor_core_s == pytest.approx(200e-9) and ops.ops[0].self_s > 0


# ---------------------------------------------------------------- records written before


def keeps(new: Any, old: Any) -> bool:
    """``new`` has every key of ``old`` (recursively) with the same value."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and keeps(new[k], v)
                                             for k, v in old.items())
    if isinstance(old, list):
        return (isinstance(new, list) and len(new) == len(old)
                and all(keeps(n, o) for n, o in zip(new, old, strict=True)))
    return new == old


def old_record() -> tuple[RunRecord, dict[str, Any]]:
    """A schema-2 record written by perfpilot 4f6abdc (dict sections; findings with their
    evidence in ``extra``), and its JSON."""
    d = json.loads(OLD.read_text())
    return RunRecord.from_dict(d), d


def test_old_dict_sections_load_typed():
    rec, d = old_record()
    assert d["schema"] == "perfpilot.runrecord/2"
    assert rec.loaders[0] == LoaderInfo.from_dict(d["loaders"][0])
    assert rec.loaders[0].site == SITE and rec.loaders[0].role == "train"
    assert rec.io[0].call == "torch.save" and rec.io[0].count == 50
    assert [r.type for r in rec.roots] == ["Net", "CrossEntropyLoss"]
    assert rec.optimizers[0].steps == 50 and rec.set_num_threads[0].value == 16
    assert rec.grad_in_eval.calls[0].without_backward == 40
    assert rec.grad_in_eval.grad_over_nograd == (1.4, 1.5, 1.6)
    assert rec.hot_ops.aten_ops_per_step == 100.0 and rec.hot_ops.cuda.pageable_h2d_s == 0.25
    assert rec.cuda.measured and rec.cuda.capability == (9, 0)
    assert rec.cuda.memory.total_bytes == 80 * 2**30 and rec.cuda.utilization.mean == 30.0
    assert rec.calibration.threads.target == 4 and rec.calibration.matmul.tf32_factor == 3.0
    saved = plain(rec.to_dict())
    for name in FILLED:  # the JSON keys did not change: a re-save keeps what was read
        assert keeps(saved[name], d[name]), name
    assert rec.extra == {"my_note": "added by the user"}


def test_old_findings_extra_maps_to_typed_fields():
    rec, d = old_record()
    by_id = {f.id: f for f in rec.findings}
    for old in d["findings"]:
        f = by_id[old["id"]]
        assert f.time_share == old["time_share"] and f.factor == old["extra"]["factor"]
    assert by_id["gpu-idle"].tag == "data"
    assert by_id["gpu-idle"].measured == (Measure("utilization", 30.0, "%"),)
    assert by_id["io-in-loop"].measured == (Measure("calls", 50, "count"),)
    assert by_id["small-batch"].measured_value("fixed_fraction") == pytest.approx(0.5)
    dataset = ("/home/me/data.py", 24, "__getitem__")
    assert by_id["dataloader-bound"].measured == (
        Measure("hot_line_share", pytest.approx(0.1), "fraction", dataset),
        Measure("hot_line_of_loading", 1.0, "fraction", dataset))
    for copied in ("thread-oversubscription", "grad-in-eval"):  # the record holds these
        assert by_id[copied].measured == ()
    lint = by_id["inefficient-membership"]
    assert lint.factor == 10.0 and lint.lint == LintDetail(
        also=("ruff:PERF401",), diff=("- if tok in vocab:", "+ if tok in vocab_set:"),
        loop_share=lint.lint.loop_share, loop_depth=1, severity=3, source="perfpilot",
        column=11, loop=LoopSpan(24, 26), measure="line",
        assumption=d["findings"][-1]["extra"]["assumption"], line_share=0.3,
        attributed_share=0.5)
    saved = plain(rec.to_dict())
    assert all("extra" not in f for f in saved["findings"])
    assert RunRecord.from_dict(saved) == rec


def test_rules_on_an_old_record_find_what_the_old_rules_found():
    rec, _ = old_record()
    stored = {f.id: f for f in rec.findings}
    f = facts_of(rec)
    for rule in (dataloader_bound, gpu_idle, io_in_loop, grad_in_eval,
                 thread_oversubscription):
        (now,) = rule(f)
        old = stored[now.id]
        assert (now.evidence, now.fix, now.estimated_speedup, now.location, now.plan_change,
                now.time_share, now.factor, now.tag) == (
            old.evidence, old.fix, old.estimated_speedup, old.location, old.plan_change,
            old.time_share, old.factor, old.tag), now.id
        assert now.measured == old.measured, now.id


def test_finding_from_dict_drops_unknown_extra_keys():
    f = Finding.from_dict({"id": "x", "title": "t", "evidence": "e", "fix": "f",
                           "estimated_speedup": 1.5,
                           "extra": {"share": 0.4, "factor": 2.0, "mine": [1, 2],
                                     "loader": {"num_workers": 0}}})
    assert (f.time_share, f.factor, f.measured, f.lint) == (0.4, 2.0, (), None)
    assert "extra" not in f.to_dict()
