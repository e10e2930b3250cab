"""Efficiency accounting of a training run: throughput, training FLOPs, model-FLOPs utilisation (MFU) against the
machine's measured matmul peak, energy and CO₂e. Every recipe records `efficiency_record(...)` as
`lineage["efficiency"]`; the model card and the lifecycle report show it (as `efficiency_text` writes it).

How each figure is obtained (the record names the method it used):

- Training FLOPs of a transformer LM (`transformer_flops`): 2·N·D forward + 2·N·D backward through the activations
  + 2·N_trainable·D weight gradients, i.e. 6·N·D when every weight trains (LoRA: ~4·N·D). D = tokens trained on,
  N = parameters that take part in matrix multiplications (`matmul_parameters`): the input embedding tables are
  lookups and are left out, the output projection counts even when it is tied to them. Attention's own term
  (12·L·d·T per token, PaLM's convention) is added when the sequence length T is known. Not counted: reference
  model forwards (DPO, GRPO/PPO KL), sampling in online RL, evaluation, so MFU understates those stages' use.
- Training FLOPs of other models (UNets, CLIP, SpeechT5, video denoisers): measured with
  `torch.utils.flop_counter.FlopCounterMode` on the first training step of the run (forward and backward as run:
  frozen parts forward only; matmuls, convolutions and attention, CPU fused attention kernels included),
  times the number of steps.
- Peak (`matmul_peak_flops`): square matmuls in the training precision with this process's thread count for
  ~0.4 s; the best of this measurement and earlier ones on the same machine (cached in
  `~/.cache/hfrecipes/matmul_peak.json`, keyed by device, dtype, threads and torch version).
  `HFRECIPES_PEAK_FLOPS` overrides it (e.g. a GPU's datasheet figure). With several processes the peak is
  per process × processes.
- MFU = training FLOPs / training seconds / peak, reported in [0, 1] (`mfu_unclamped` keeps a value > 1, a sign
  that the peak was measured on a busy machine). Training seconds are the optimizer steps' time (evaluation and
  checkpoints excluded).
- Energy, over the whole training call (evaluations included): Intel RAPL package counters
  (`/sys/class/powercap/intel-rapl:*/energy_uj`, the whole CPU package, other processes included) when readable;
  else an estimate: process CPU time (user + system, all threads and waited-for children; × processes) ×
  `HFRECIPES_WATTS_PER_CORE` (default 6.25 W: an Intel Xeon Platinum 8480+'s 350 W TDP / 56 cores; memory,
  cooling and idle power left out). A GPU adds its NVML energy counter (nvidia-ml-py) or, without it, wall time ×
  `HFRECIPES_WATTS_PER_GPU` (default 700 W, an H100/H200 SXM's TDP: an upper bound).
- CO₂e = energy × `HFRECIPES_GRID_KG_PER_KWH` (default 0.475 kg/kWh, the world-average grid intensity that
  CodeCarbon also defaults to; use your grid's figure).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from hfrecipes.core.io import atomic_write_json

try:
    import resource
except ImportError:  # not on Unix: `_cpu_seconds` falls back to os.times
    resource = None

WATTS_PER_CORE = 6.25  # Intel Xeon Platinum 8480+: 350 W TDP / 56 cores
WATTS_PER_GPU = 700.0  # H100 / H200 SXM TDP
GRID_KG_PER_KWH = 0.475  # world average (IEA 2019; CodeCarbon's default)
RAPL_ROOT = Path("/sys/class/powercap")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    try:
        return float(value) if value else default
    except ValueError as err:
        raise ValueError(f"{name}={value!r} is not a number") from err


# --- FLOPs -------------------------------------------------------------------------------------------------------


def matmul_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(N, N_trainable): parameters used in matrix multiplications, each counted once. Input embedding tables are
    lookups and are left out; an output projection tied to one of them is counted (its matmul is real)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    total = trainable = 0
    for p in {id(p): p for p in model.parameters()}.values():
        if id(p) not in embeddings:
            total += p.numel()
            trainable += p.numel() if p.requires_grad else 0
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(output, "weight", None)
    if weight is not None and id(weight) in embeddings:
        total += weight.numel()
        trainable += weight.numel() if weight.requires_grad else 0
    return total, trainable


def transformer_flops(
    n_params: int,
    tokens: float,
    *,
    trainable_params: int | None = None,
    n_layers: int | None = None,
    d_model: int | None = None,
    seq_len: int | None = None,
) -> float:
    """Training FLOPs of a transformer: 6·N·D when all N (non-embedding) parameters train; with frozen weights
    2·N·D forward + 2·N·D activation gradients + 2·N_trainable·D weight gradients; plus 12·L·d·T·D for attention
    scores and values when layers, width and sequence length are all given."""
    trainable = n_params if trainable_params is None else trainable_params
    flops = (4 * n_params + 2 * trainable) * tokens
    if n_layers and d_model and seq_len:
        flops += 12 * n_layers * d_model * seq_len * tokens
    return float(flops)


def _cpu_attention_formulas() -> dict:
    """FlopCounterMode (torch 2.13) has no formula for the CPU fused attention kernels, so attention on CPU
    would count 0: the GPU kernels' formulas (full, unmasked T×T products, as PaLM counts them) for them."""
    aten, mapping = torch.ops.aten, {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = (
            lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v)
        )
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = (
            lambda grad, q, k, v, *args, out_shape=None, **kwargs: sdpa_backward_flop_count(grad, q, k, v)
        )
    return mapping


def flop_counter():
    """A FlopCounterMode that prints nothing (use as a context manager, then `.get_total_flops()`); it also
    counts attention run by the CPU fused kernels."""
    return FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas())


class FirstStepFlops:
    """FLOPs of the first training step, counted by FlopCounterMode between `begin()` and `end()`; later steps
    run uncounted (the counter's dispatch overhead is paid once)."""

    def __init__(self) -> None:
        self.flops: float | None = None
        self._counter = None

    def begin(self) -> None:
        if self.flops is None and self._counter is None:
            self._counter = flop_counter()
            self._counter.__enter__()

    def end(self) -> None:
        if self._counter is not None:
            counter, self._counter = self._counter, None
            counter.__exit__(None, None, None)
            self.flops = float(counter.get_total_flops())


# --- peak --------------------------------------------------------------------------------------------------------

_PEAKS: dict[str, float] = {}


def cache_dir() -> Path:
    """hfrecipes' cache folder: HFRECIPES_CACHE, else $XDG_CACHE_HOME/hfrecipes, else ~/.cache/hfrecipes."""
    root = os.environ.get("HFRECIPES_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hfrecipes"
    )
    return Path(root)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (from /proc/cpuinfo, else `platform`), for records and cache keys."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _benchmark(dtype: torch.dtype, device: torch.device, seconds: float) -> float:
    """Best FLOP/s of square matmuls over ~`seconds` (a private generator: the global RNG stream is untouched)."""
    n = 8192 if device.type == "cuda" else 1024
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=generator).to(device=device, dtype=dtype)
    b = torch.rand(n, n, generator=generator).to(device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best, repeats = 0.0, 4 if device.type == "cuda" else 1
    with torch.inference_mode():
        torch.mm(a, b, out=out)  # warm-up: thread pool, kernels
        sync()
        deadline = time.perf_counter() + seconds
        while True:
            start = time.perf_counter()
            for _ in range(repeats):
                torch.mm(a, b, out=out)
            sync()
            elapsed = time.perf_counter() - start
            best = max(best, 2 * n**3 * repeats / max(elapsed, 1e-12))
            if time.perf_counter() > deadline:
                return best


def matmul_peak_flops(
    dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", *, seconds: float = 0.4
) -> float:
    """Measured matmul FLOP/s of one process with its current thread count: measured once per process, and the
    best ever measured for the same device, dtype, threads and torch version is kept on disk (a measurement on a
    busy machine is low). `HFRECIPES_PEAK_FLOPS` overrides it."""
    override = os.environ.get("HFRECIPES_PEAK_FLOPS")
    if override:
        return float(override)
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = (
        f"{device.type}|{device_name(device)}|{str(dtype).removeprefix('torch.')}"
        f"|threads={torch.get_num_threads()}|torch={torch.__version__}"
    )
    if key in _PEAKS:
        return _PEAKS[key]
    measured = _benchmark(dtype, device, seconds)
    path = cache_dir() / "matmul_peak.json"
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    best = max(measured, float(cache.get(key, 0.0)))
    if best > float(cache.get(key, 0.0)):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, {**cache, key: best})
        except OSError:
            pass  # a read-only home: the per-process value still holds
    _PEAKS[key] = best
    return best


# --- energy ------------------------------------------------------------------------------------------------------


def read_rapl(root: Path = RAPL_ROOT) -> dict[str, tuple[int, int]] | None:
    """{package zone: (energy_uj, max_energy_range_uj)} of the top-level RAPL zones, or None if unreadable."""
    zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1) if root.is_dir() else []
    try:
        readings = {
            z.name: (int((z / "energy_uj").read_text()), int((z / "max_energy_range_uj").read_text()))
            for z in zones
        }
    except (OSError, ValueError):
        return None
    return readings or None


def rapl_joules(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> float:
    """Energy between two readings; a counter that wrapped around adds its range."""
    total = 0
    for zone, (start, range_uj) in before.items():
        end = after.get(zone, (start, range_uj))[0]
        total += end - start if end >= start else end + range_uj - start
    return total / 1e6


def _nvml_energy_mj(device: torch.device) -> float | None:
    """A GPU's total energy counter (mJ since the driver loaded), or None without nvidia-ml-py / support."""
    try:
        import pynvml

        pynvml.nvmlInit()
        index = device.index if device.index is not None else torch.cuda.current_device()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        if index < len(visible) and visible[index].strip().isdigit():
            index = int(visible[index])
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception:  # noqa: BLE001 - no library, no driver, unsupported GPU: fall back to the estimate
        return None


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and of its waited-for children."""
    if resource is None:  # not on Unix: os.times (10 ms ticks)
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Measurement:
    """What an `EfficiencyMeter` saw between start and stop (summed over start/stop pairs)."""

    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    rapl_joules: float | None = None
    gpu_joules: float | None = None
    device: str = "cpu"


class EfficiencyMeter:
    """Wall clock, this process's CPU time, RAPL package energy (when readable) and, on a GPU, its NVML energy
    counter, from `start()` to `stop()`. Start/stop pairs accumulate."""

    def __init__(self, device: str | torch.device = "cpu", rapl_root: Path = RAPL_ROOT):
        self.device, self.rapl_root = torch.device(device), rapl_root
        self.total = Measurement(device=str(self.device))
        self._start: tuple | None = None

    @property
    def running(self) -> bool:
        return self._start is not None

    def start(self) -> EfficiencyMeter:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        gpu = _nvml_energy_mj(self.device) if self.device.type == "cuda" else None
        self._start = (time.perf_counter(), _cpu_seconds(), read_rapl(self.rapl_root), gpu)
        return self

    def stop(self) -> Measurement:
        if self._start is None:
            return self.total
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        wall, cpu, rapl, gpu = self._start
        self._start = None
        total = self.total
        total.wall_seconds += time.perf_counter() - wall
        total.cpu_seconds += _cpu_seconds() - cpu
        rapl_now = read_rapl(self.rapl_root) if rapl is not None else None
        if rapl is not None and rapl_now is not None:
            total.rapl_joules = (total.rapl_joules or 0.0) + rapl_joules(rapl, rapl_now)
        gpu_now = _nvml_energy_mj(self.device) if gpu is not None else None
        if gpu is not None and gpu_now is not None:
            total.gpu_joules = (total.gpu_joules or 0.0) + (gpu_now - gpu) / 1e3
        return total


def energy_estimate(measurement: Measurement, world_size: int = 1) -> dict[str, Any]:
    """{energy_kwh, energy_method, watts_per_core?, watts_per_gpu?} for one measurement (see the module doc)."""
    world = max(world_size, 1)
    record: dict[str, Any] = {}
    if measurement.rapl_joules is not None:
        joules = measurement.rapl_joules
        methods = ["cpu: RAPL package counters (whole CPU package, other processes included)"]
    else:
        watts = _env_float("HFRECIPES_WATTS_PER_CORE", WATTS_PER_CORE)
        joules = measurement.cpu_seconds * world * watts
        record["watts_per_core"] = watts
        methods = [
            f"cpu: CPU time × {watts:g} W/core estimate" + (f" × {world} processes" if world > 1 else "")
        ]
    if measurement.device.startswith("cuda"):
        if measurement.gpu_joules is not None:
            joules += measurement.gpu_joules * world
            methods.append("gpu: NVML energy counter" + (f" × {world} processes" if world > 1 else ""))
        else:
            watts = _env_float("HFRECIPES_WATTS_PER_GPU", WATTS_PER_GPU)
            joules += measurement.wall_seconds * watts * world
            record["watts_per_gpu"] = watts
            methods.append(f"gpu: wall time × {watts:g} W/GPU estimate (no NVML)")
    record.update(energy_kwh=joules / 3.6e6, energy_method="; ".join(methods))
    return record


# --- the record --------------------------------------------------------------------------------------------------


def peak_memory(device: torch.device) -> dict[str, Any]:
    """This process's peak memory so far: allocated GPU memory on CUDA (what `hfrecipes plan` estimates),
    else the peak resident set size (which also counts the interpreter and libraries)."""
    if device.type == "cuda":
        return {
            "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20,
            "peak_memory_method": "cuda",
        }
    if resource is None:
        return {}
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"peak_memory_mb": kilobytes / 1024, "peak_memory_method": "max RSS"}


def efficiency_record(
    measurement: Measurement,
    *,
    unit: str,
    count: float | None,
    train_flops: float | None,
    flops_method: str,
    train_seconds: float | None = None,
    steps: int | None = None,
    world_size: int = 1,
    precision: str = "fp32",
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """The `lineage["efficiency"]` entry of a run. `count` = `unit`s trained on (tokens, images, clips, ...) and
    `train_flops` the training FLOPs, both over all processes; `train_seconds` = time of the optimizer steps
    (default: the meter's wall time). Throughput and MFU use `train_seconds`, energy the meter's whole window."""
    device = torch.device(device or measurement.device)
    world = max(world_size, 1)
    seconds = train_seconds if train_seconds is not None else measurement.wall_seconds
    dtype = PRECISIONS.get(precision, torch.float32)
    peak = matmul_peak_flops(dtype, device) * world
    achieved = train_flops / seconds if train_flops and seconds else None
    mfu = achieved / peak if achieved and peak else None
    record: dict[str, Any] = {
        "unit": unit,
        "steps": steps,
        unit: count,
        f"{unit}_per_second": count / seconds if count and seconds else None,
        "train_seconds": seconds,
        "wall_seconds": measurement.wall_seconds,
        "cpu_seconds": measurement.cpu_seconds,
        "train_flops": train_flops,
        "flops_method": flops_method,
        "achieved_flops_per_second": achieved,
        "peak_flops_per_second": peak,
        "peak_method": (
            "HFRECIPES_PEAK_FLOPS"
            if os.environ.get("HFRECIPES_PEAK_FLOPS")
            else f"measured {str(dtype).removeprefix('torch.')} matmul on {device_name(device)}, "
            f"{torch.get_num_threads()} thread(s)" + (f" × {world} processes" if world > 1 else "")
        ),
        "mfu": None if mfu is None else min(max(mfu, 0.0), 1.0),
    }
    if mfu is not None and mfu > 1:
        record["mfu_unclamped"] = mfu
    record.update(energy_estimate(measurement, world))
    record.update(peak_memory(device))
    grid = _env_float("HFRECIPES_GRID_KG_PER_KWH", GRID_KG_PER_KWH)
    record.update(
        co2e_kg=record["energy_kwh"] * grid,
        grid_kg_per_kwh=grid,
        world_size=world,
        precision=precision,
        scope="this training run (since the checkpoint it resumed from, if any)",
    )
    return record


def with_unit(record: dict[str, Any], unit: str) -> dict[str, Any]:
    """The same record counted in another unit's name ("samples" -> "images")."""
    old = record.get("unit")
    if not record or old == unit:
        return record
    renamed = {
        (unit if k == old else f"{unit}_per_second" if k == f"{old}_per_second" else k): v
        for k, v in record.items()
    }
    renamed["unit"] = unit
    return renamed


# --- Trainer -----------------------------------------------------------------------------------------------------


class EfficiencyCallback(TrainerCallback, ExportableState):
    """Measures a `transformers.Trainer` run: the meter runs from train begin to train end; step time is the sum
    of step begin -> step end (forward, backward, optimizer; data loading, logging, evaluation and saving outside).
    `flops="transformer"`: 6·N·D on the tokens the trainer counted (TRL's `_total_train_tokens`, or
    `num_input_tokens_seen`); `flops="measured"`: FlopCounterMode on the run's first step, × steps, and `unit`s =
    steps × global batch."""

    def __init__(
        self, trainer, *, flops: str = "transformer", unit: str | None = None, seq_len: int | None = None
    ):
        if flops not in ("transformer", "measured"):
            raise ValueError(f"flops must be 'transformer' or 'measured', got {flops!r}")
        self.trainer, self.flops, self.seq_len = trainer, flops, seq_len
        self.unit = unit or ("tokens" if flops == "transformer" else "samples")
        self.meter = EfficiencyMeter(trainer.args.device)
        self.step_seconds, self.steps, self.first_step = 0.0, 0, FirstStepFlops()
        self._step_start = None

    def _tokens(self) -> tuple[float, float]:
        return float(getattr(self.trainer, "_total_train_tokens", 0) or 0), float(
            self.trainer.state.num_input_tokens_seen or 0
        )

    def state(self) -> dict[str, Any]:
        """Saved in each checkpoint's trainer_state.json: the measured step FLOPs."""
        return {"args": {}, "attributes": {"step_flops": self.first_step.flops}}

    def on_train_begin(self, args, state, control, **kwargs):
        self.step_seconds, self.steps, self.first_step = 0.0, 0, FirstStepFlops()
        # Counting FLOPs changes the counted step's rounding: a resumed run reuses its checkpoint's count, so only
        # the first step of the whole run is ever counted and resume stays bit-exact.
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if state.global_step > 0 and isinstance(saved, dict):
            self.first_step.flops = saved.get("attributes", {}).get("step_flops")
        self._tokens_at_start = self._tokens()
        self.meter = EfficiencyMeter(args.device).start()

    def on_step_begin(self, args, state, control, **kwargs):
        if self.flops == "measured":
            self.first_step.begin()
        if args.device.type == "cuda":
            torch.cuda.synchronize(args.device)
        self._step_start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if args.device.type == "cuda":
            torch.cuda.synchronize(args.device)
        if self._step_start is not None:
            self.step_seconds += time.perf_counter() - self._step_start
            self.steps += 1
        self.first_step.end()

    def on_train_end(self, args, state, control, **kwargs):
        self.first_step.end()  # in case training ended inside a step
        self.measurement = self.meter.stop()

    def record(self) -> dict[str, Any] | None:
        """The efficiency record of the last `train()` (None before one finished)."""
        if not hasattr(self, "measurement"):
            return None
        args, model = self.trainer.args, self.trainer.accelerator.unwrap_model(self.trainer.model)
        precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
        common = dict(
            train_seconds=self.step_seconds,
            steps=self.steps,
            world_size=args.world_size,
            precision=precision,
            device=args.device,
        )
        if self.flops == "measured":
            per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
            step_flops = self.first_step.flops
            flops = step_flops * self.steps * args.world_size if step_flops else None
            method = "measured: FlopCounterMode on the first training step (forward + backward) × steps"
            return efficiency_record(
                self.measurement,
                unit=self.unit,
                count=self.steps * per_step,
                train_flops=flops,
                flops_method=method,
                **common,
            )
        tokens = max(now - start for now, start in zip(self._tokens(), self._tokens_at_start, strict=True))
        return lm_efficiency(self.measurement, model, tokens, seq_len=self.seq_len, **common)


def lm_efficiency(
    measurement: Measurement,
    model: torch.nn.Module,
    tokens: float,
    *,
    seq_len: int | None = None,
    note: str = "reference models, sampling and evaluation not counted",
    **record: Any,
) -> dict[str, Any]:
    """`efficiency_record` of a transformer LM trained on `tokens` (all processes): FLOPs by `transformer_flops`
    from the model's matmul parameters (and its config's layers and width when `seq_len` is given). `record`:
    efficiency_record's train_seconds, steps, world_size, precision, device."""
    tokens = int(tokens) if float(tokens).is_integer() else tokens
    n, trainable = matmul_parameters(model)
    config = getattr(model, "config", None)
    layers, width = getattr(config, "num_hidden_layers", None), getattr(config, "hidden_size", None)
    flops = transformer_flops(
        n, tokens, trainable_params=trainable, n_layers=layers, d_model=width, seq_len=seq_len
    )
    method = (
        f"{'6' if trainable == n else f'(4 + 2·{trainable / n:.3f})'}·N·D, N = {n:,} parameters in matmuls "
        "(input embeddings excluded, output projection included), D = non-padding tokens trained on"
        + (f"; + 12·L·d·T·D attention (T = {seq_len})" if seq_len and layers and width else "")
        + (f"; {note}" if note else "")
    )
    return efficiency_record(
        measurement, unit="tokens", count=tokens, train_flops=flops, flops_method=method, **record
    )


def track_efficiency(
    trainer, *, flops: str = "transformer", unit: str | None = None, seq_len: int | None = None
) -> EfficiencyCallback:
    """Attach an `EfficiencyCallback` to a Trainer before `train()`; `trainer_efficiency(trainer)` reads it. For
    a language model without TRL's token count, the Trainer's own count of non-padding input tokens is enabled."""
    if (
        flops == "transformer"
        and not hasattr(trainer, "_total_train_tokens")
        and trainer.args.include_num_input_tokens_seen in ("no", False)
    ):
        trainer.args.include_num_input_tokens_seen = "non_padding"
    callback = EfficiencyCallback(trainer, flops=flops, unit=unit, seq_len=seq_len)
    trainer.add_callback(callback)
    return callback


def trainer_efficiency(trainer) -> dict[str, Any] | None:
    """The efficiency record of a Trainer that `track_efficiency` was attached to (else None)."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, EfficiencyCallback):
            return callback.record()
    return None


__all__ = [
    "EfficiencyCallback",
    "EfficiencyMeter",
    "FirstStepFlops",
    "Measurement",
    "efficiency_record",
    "energy_estimate",
    "flop_counter",
    "lm_efficiency",
    "matmul_parameters",
    "matmul_peak_flops",
    "read_rapl",
    "track_efficiency",
    "trainer_efficiency",
    "transformer_flops",
    "with_unit",
]
