"""Efficiency accounting: FLOPs formulas against FlopCounterMode, the matmul peak, energy, the record, the Trainer
callback, and the model card / lifecycle report sections."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from huggingface_hub import ModelCard
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments, default_data_collator

from hfrecipes.core import efficiency as eff
from hfrecipes.core.hub import build_lineage, render_model_card
from hfrecipes.core.io import atomic_write_json
from hfrecipes.lifecycle.report import efficiency_table


@pytest.fixture(autouse=True)
def private_peak_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HFRECIPES_CACHE", str(tmp_path / "cache"))
    for name in ("HFRECIPES_PEAK_FLOPS", "HFRECIPES_WATTS_PER_CORE", "HFRECIPES_GRID_KG_PER_KWH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(eff, "_PEAKS", {})


def tiny_lm(tied: bool = True) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config)


def test_transformer_flops_is_6nd_and_4nd_plus_trainable_with_frozen_weights():
    assert eff.transformer_flops(1000, 50) == 6 * 1000 * 50
    assert eff.transformer_flops(1000, 50, trainable_params=10) == (4 * 1000 + 2 * 10) * 50
    with_attention = eff.transformer_flops(1000, 50, n_layers=2, d_model=8, seq_len=16)
    assert with_attention == 6 * 1000 * 50 + 12 * 2 * 8 * 16 * 50


def test_matmul_parameters_leave_out_embedding_lookups_but_count_the_output_projection():
    for tied in (True, False):
        model = tiny_lm(tied)
        n, trainable = eff.matmul_parameters(model)
        embedding = model.get_input_embeddings().weight.numel()
        unique = sum(p.numel() for p in model.parameters())
        # Tied: the one 256x64 table is the output projection's weight too; untied: two tables, one left out.
        assert n == trainable == (unique if tied else unique - embedding)
    model.model.requires_grad_(False)
    assert eff.matmul_parameters(model)[1] == model.lm_head.weight.numel()


def test_6nd_agrees_with_flops_measured_on_a_training_step():
    model, batch, seq = tiny_lm(), 4, 32
    ids = torch.randint(0, 256, (batch, seq), generator=torch.Generator().manual_seed(0))
    counter = eff.FirstStepFlops()
    counter.begin()
    model(input_ids=ids, labels=ids).loss.backward()
    counter.end()
    n, _ = eff.matmul_parameters(model)
    config = model.config
    estimate = eff.transformer_flops(
        n, batch * seq, n_layers=config.num_hidden_layers, d_model=config.hidden_size, seq_len=seq
    )
    # Measured: every matmul and attention product forward and backward (measured 1.01x the estimate).
    assert 0.95 < counter.flops / estimate < 1.05, (counter.flops, estimate)
    counter.begin()  # only the first step is counted
    assert counter.flops is not None and counter._counter is None


def test_attention_on_cpu_fused_kernels_is_counted():
    q = torch.randn(1, 2, 32, 16, requires_grad=True)
    with eff.flop_counter() as counter:
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward()
    forward = 4 * 2 * 32 * 32 * 16  # QK^T and AV, full T×T
    assert counter.get_total_flops() == forward * 3.5  # torch's backward formula: 2.5x the forward


def test_matmul_peak_is_measured_once_cached_on_disk_and_overridable(tmp_path, monkeypatch):
    started = time.perf_counter()
    peak = eff.matmul_peak_flops(seconds=0.1)
    assert 1e8 < peak < 1e13 and time.perf_counter() - started < 5
    assert eff.matmul_peak_flops() == peak  # this process: no second benchmark
    cached = (tmp_path / "cache" / "matmul_peak.json").read_text()
    assert f"threads={torch.get_num_threads()}" in cached and "float32" in cached
    monkeypatch.setattr(eff, "_PEAKS", {})
    assert eff.matmul_peak_flops(seconds=0.05) >= peak  # the best measurement on this machine is kept
    monkeypatch.setenv("HFRECIPES_PEAK_FLOPS", "1e12")
    assert eff.matmul_peak_flops() == 1e12


def test_rapl_counters_are_summed_per_package_and_wraparound_is_handled(tmp_path):
    root = tmp_path / "powercap"
    for zone, value in (("intel-rapl:0", 1_000_000), ("intel-rapl:1", 5_000_000), ("intel-rapl:0:0", 7)):
        (root / zone).mkdir(parents=True)
        (root / zone / "energy_uj").write_text(str(value))
        (root / zone / "max_energy_range_uj").write_text("10000000")
    before = eff.read_rapl(root)
    assert set(before) == {"intel-rapl:0", "intel-rapl:1"}  # sub-zones are inside their package
    (root / "intel-rapl:0" / "energy_uj").write_text("3000000")  # +2 J
    (root / "intel-rapl:1" / "energy_uj").write_text("1000000")  # wrapped: +6 J
    assert eff.rapl_joules(before, eff.read_rapl(root)) == pytest.approx(8.0)
    assert eff.read_rapl(tmp_path / "missing") is None
    meter = eff.EfficiencyMeter(rapl_root=root).start()
    (root / "intel-rapl:0" / "energy_uj").write_text("3360000")  # +0.36 J
    measurement = meter.stop()
    assert measurement.rapl_joules == pytest.approx(0.36)
    assert eff.energy_estimate(measurement)["energy_method"].startswith("cpu: RAPL")


def test_record_of_a_measured_training_loop_is_plausible(monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(128, 256)
    meter, first, seconds, steps = eff.EfficiencyMeter().start(), eff.FirstStepFlops(), 0.0, 20
    for _ in range(steps):
        started = time.perf_counter()
        first.begin()
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        first.end()
        seconds += time.perf_counter() - started
    # Linear layers: forward 2·N per row, backward 4·N except the first layer's input gradient.
    n_first, n_second = 256 * 512, 512 * 256
    assert first.flops == 128 * (6 * n_first + 6 * n_second - 2 * n_first)
    record = eff.efficiency_record(
        meter.stop(),
        unit="images",
        count=128 * steps,
        train_flops=first.flops * steps,
        flops_method="measured",
        train_seconds=seconds,
        steps=steps,
    )
    assert record["images"] == 2560 and record["images_per_second"] == pytest.approx(2560 / seconds)
    assert 0 < record["mfu"] < 1, record
    assert record["achieved_flops_per_second"] < record["peak_flops_per_second"] * 1.5
    assert record["energy_kwh"] > 0 and record["cpu_seconds"] > 0
    assert (
        record["energy_method"] == "cpu: CPU time × 6.25 W/core estimate" and record["watts_per_core"] == 6.25
    )
    assert record["co2e_kg"] == pytest.approx(record["energy_kwh"] * 0.475)
    assert eff.with_unit(record, "clips")["clips_per_second"] == record["images_per_second"]

    monkeypatch.setenv("HFRECIPES_WATTS_PER_CORE", "10")
    monkeypatch.setenv("HFRECIPES_GRID_KG_PER_KWH", "0.1")
    measurement = eff.Measurement(wall_seconds=10, cpu_seconds=36, device="cpu")
    two = eff.efficiency_record(
        measurement, unit="tokens", count=None, train_flops=None, flops_method="-", world_size=2
    )
    assert two["energy_kwh"] == pytest.approx(36 * 2 * 10 / 3.6e6) and two["mfu"] is None
    assert (
        two["co2e_kg"] == pytest.approx(two["energy_kwh"] * 0.1) and "× 2 processes" in two["energy_method"]
    )
    gpu = eff.energy_estimate(eff.Measurement(wall_seconds=3.6, cpu_seconds=0, device="cuda:0"))
    assert gpu["energy_kwh"] == pytest.approx(3.6 * 700 / 3.6e6) and "W/GPU" in gpu["energy_method"]


def lm_trainer(tmp_path, **args) -> Trainer:
    ids = torch.randint(0, 256, (64, 32), generator=torch.Generator().manual_seed(0)).tolist()
    data = Dataset.from_dict({"input_ids": ids, "labels": ids})
    args = {"save_strategy": "no", "logging_steps": 3, **args}
    training_args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=6,
        per_device_train_batch_size=4,
        report_to="none",
        use_cpu=True,
        **args,
    )
    return Trainer(
        model=tiny_lm(), args=training_args, train_dataset=data, data_collator=default_data_collator
    )


def test_trainer_callback_counts_tokens_and_measured_flops_agree_with_6nd(tmp_path):
    trainer = lm_trainer(tmp_path)
    assert eff.trainer_efficiency(trainer) is None
    eff.track_efficiency(trainer, seq_len=32)
    trainer.train()
    record = eff.trainer_efficiency(trainer)
    assert record["unit"] == "tokens" and record["tokens"] == 6 * 4 * 32 and record["steps"] == 6
    assert 0 < record["mfu"] < 1 and 0 < record["train_seconds"] <= record["wall_seconds"]
    assert record["flops_method"].startswith("6·N·D") and "attention (T = 32)" in record["flops_method"]

    measured = lm_trainer(tmp_path)
    eff.track_efficiency(measured, flops="measured", unit="sequences")
    measured.train()
    other = eff.trainer_efficiency(measured)
    assert other["sequences"] == 6 * 4 and other["flops_method"].startswith("measured")
    assert 0.95 < other["train_flops"] / record["train_flops"] < 1.05
    assert 0 < other["mfu"] < 1


def test_measured_flops_are_counted_once_per_run_so_resume_stays_exact(tmp_path):
    # Counting a step changes its rounding; a resumed run reuses the checkpoint's count instead of counting again.
    straight = lm_trainer(tmp_path / "a", seed=3, lr_scheduler_type="constant")
    eff.track_efficiency(straight, flops="measured", unit="sequences")
    straight.train()
    interrupted = lm_trainer(
        tmp_path / "b", seed=3, lr_scheduler_type="constant", save_strategy="steps", save_steps=3
    )
    interrupted.args.max_steps = 3
    eff.track_efficiency(interrupted, flops="measured", unit="sequences")
    interrupted.train()
    resumed = lm_trainer(
        tmp_path / "b", seed=3, lr_scheduler_type="constant", save_strategy="steps", save_steps=3
    )
    callback = eff.track_efficiency(resumed, flops="measured", unit="sequences")
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / "checkpoint-3"))
    record = eff.trainer_efficiency(resumed)
    assert (
        record["steps"] == 3
        and callback.first_step.flops == eff.trainer_efficiency(interrupted)["train_flops"] / 3
    )
    for name, weight in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], weight, rtol=0, atol=0)


def test_model_card_and_lifecycle_report_show_the_efficiency(tmp_path):
    measurement = eff.Measurement(wall_seconds=12.0, cpu_seconds=11.0, device="cpu")
    record = eff.efficiency_record(
        measurement,
        unit="tokens",
        count=61_440,
        train_flops=3e11,
        flops_method="6·N·D",
        train_seconds=10.0,
        steps=60,
    )
    lineage = build_lineage(
        recipe="text/pretrain", config={}, inputs=[], data_report=None, metrics={}, efficiency=record
    )
    assert lineage["efficiency"]["tokens_per_second"] == pytest.approx(6144)
    card = ModelCard(str(render_model_card(lineage, title="t: x", description="d", usage="u")))
    assert "## Efficiency" in card.text and "6,144.0 tokens/s" in card.text and "MFU" in card.text
    assert "kg/kWh" in card.text and "CPU time × 6.25 W/core" in card.text
    no_record = render_model_card(
        build_lineage(recipe="r", config={}, inputs=[], data_report=None, metrics={}),
        title="t",
        description="d",
        usage="u",
    )
    assert "## Efficiency" not in str(no_record)

    stages = [SimpleNamespace(name=name) for name in ("tokenizer", "pretrain")]
    lifecycle = SimpleNamespace(stages=stages, output_dir=lambda name: tmp_path / name)
    assert efficiency_table(lifecycle) == "_No stage recorded its efficiency._"
    (tmp_path / "pretrain").mkdir()
    atomic_write_json(tmp_path / "pretrain" / "lineage.json", lineage)
    table = efficiency_table(lifecycle)
    assert "| pretrain | 6,144.0 tokens/s | 3e+11 |" in table and "| **total** |" in table
    assert f"{record['mfu']:.1%}" in table and "tokenizer" not in table
