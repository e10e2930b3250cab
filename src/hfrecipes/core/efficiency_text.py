"""How an efficiency record (`hfrecipes.core.efficiency.efficiency_record`) reads in model cards and the lifecycle
report. Plain formatting without torch or transformers, so that the modules writing cards and reports (`hub`,
`hfrecipes.lifecycle.report`) and the commands using them (`hfrecipes run`, `push`) start in a moment."""

from __future__ import annotations

from typing import Any


def _si(value: float, suffix: str = "") -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{suffix}"
    return f"{value:.3g} {suffix}".rstrip()


def energy_text(kwh: float | None) -> str:
    """An energy for reports: kWh from 1 kWh up, else Wh; empty when unknown."""
    if kwh is None:
        return ""
    return f"{kwh:.3g} kWh" if kwh >= 1 else f"{kwh * 1000:.3g} Wh"


def co2e_text(kg: float | None) -> str:
    """A CO₂e mass for reports: kg from 1 kg up, else g; empty when unknown."""
    if kg is None:
        return ""
    return f"{kg:.3g} kg" if kg >= 1 else f"{kg * 1000:.3g} g"


def throughput_text(record: dict[str, Any]) -> str:
    """An efficiency record's throughput for reports ("1,234.5 tokens/s"); empty when unknown."""
    unit = record.get("unit", "samples")
    rate = record.get(f"{unit}_per_second")
    return f"{rate:,.1f} {unit}/s" if rate is not None else ""


def efficiency_markdown(record: dict[str, Any]) -> str:
    """The model card's Efficiency section body."""
    unit, count = record.get("unit", "samples"), record.get(record.get("unit", "samples"))
    steps = f", {record['steps']} steps)" if record.get("steps") else ")"
    throughput = (
        f"{throughput_text(record)} ({count:,.0f} {unit} in {record['train_seconds']:.1f} s "
        f"of training steps{steps}"
        if count
        else ""
    )
    achieved = record.get("achieved_flops_per_second")
    rows = [
        ("throughput", throughput),
        ("training compute", f"{record['train_flops']:.3g} FLOPs" if record.get("train_flops") else ""),
        ("achieved", _si(achieved, "FLOP/s") if achieved else ""),
        ("peak", f"{_si(record['peak_flops_per_second'], 'FLOP/s')} ({record.get('peak_method')})"),
        ("MFU", f"{record['mfu']:.1%}" if record.get("mfu") is not None else "n/a"),
        (
            "peak memory",
            f"{record['peak_memory_mb']:,.0f} MB ({record.get('peak_memory_method')})"
            if record.get("peak_memory_mb")
            else "",
        ),
        (
            "energy",
            f"{energy_text(record.get('energy_kwh'))} ({record.get('energy_method')}; "
            f"{record.get('wall_seconds', 0):.1f} s wall, {record.get('cpu_seconds', 0):.1f} s CPU)",
        ),
        ("CO₂e", f"{co2e_text(record.get('co2e_kg'))} (at {record.get('grid_kg_per_kwh')} kg/kWh)"),
    ]
    table = "| | |\n|---|---|\n" + "\n".join(f"| {name} | {value} |" for name, value in rows if value)
    return (
        f"{table}\n\nTraining FLOPs: {record.get('flops_method')}. MFU = training FLOPs / training-step time / "
        "measured matmul peak. Energy covers the whole training call (evaluations included); set "
        "HFRECIPES_WATTS_PER_CORE and HFRECIPES_GRID_KG_PER_KWH for your hardware and grid. "
        f"Scope: {record.get('scope')}."
    )
