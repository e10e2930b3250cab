"""The full-scale dress rehearsal (bench/dress_rehearsal.py): its config transformation changes only the Hub ids,
the precision and the run length (plus the listed CPU changes), and a fast subset of the full-scale configs runs
end to end on CPU with no failure."""

import importlib.util
import subprocess
import sys

import yaml

from .conftest import ROOT

spec = importlib.util.spec_from_file_location("dress_rehearsal", ROOT / "bench" / "dress_rehearsal.py")
dress = importlib.util.module_from_spec(spec)
sys.modules["dress_rehearsal"] = dress  # its dataclass looks its module up by name
spec.loader.exec_module(dress)

FAST_SUBSET = ["reward_ultrafeedback", "embedder_bge_small"]


def test_the_full_scale_configs_are_found_with_their_recipes():
    configs = dress.full_scale_configs()
    recipes = dress.config_recipes()
    names = {path.stem for path in configs}
    assert {"sft_smollm2_135m", "dpo_zephyr_7b", "ppo_zephyr_7b", "prepare_full", "video_wan_lora"} <= names
    assert all(path in recipes for path in configs)
    assert recipes[ROOT / "recipes/text/configs/ppo_zephyr_7b.yaml"] == "text/ppo.py"


def test_the_transformation_changes_only_ids_precision_and_steps():
    path = ROOT / "recipes/text/configs/dpo_zephyr_7b.yaml"
    shipped = yaml.safe_load(path.read_text())
    fixtures = {
        "alignment-handbook/zephyr-7b-sft-full": "/fx/zephyr",
        "HuggingFaceH4/ultrafeedback_binarized": "/fx/uf",
    }
    changed, changes, problems = dress.transform(
        shipped,
        recipe="text/dpo.py",
        name="dpo_zephyr_7b",
        fixture_paths=fixtures,
        stage_paths={"runs/reward_zephyr_7b": "/fx/rm"},
    )
    assert not problems
    expected = dict(shipped)
    expected.update(
        model_name_or_path="/fx/zephyr",
        dataset_name="/fx/uf",
        reward_model_path="/fx/rm",
        bf16=False,
        max_steps=2,
    )
    expected.update({k: v for k, (v, _) in dress.machine_changes(shipped).items()})
    assert changed == expected
    assert shipped["model_name_or_path"] == "alignment-handbook/zephyr-7b-sft-full"  # the input is left alone
    assert any("bf16" in change for change in changes)

    ppo = yaml.safe_load((ROOT / "recipes/text/configs/ppo_zephyr_7b.yaml").read_text())
    changed, _, problems = dress.transform(
        ppo, recipe="text/ppo.py", name="ppo_zephyr_7b", fixture_paths={}, stage_paths={}
    )
    assert changed["num_updates"] == 2 and "max_steps" not in changed
    assert changed["dtype"] == "float32" and changed["bf16"] is False
    assert any("zephyr-7b-sft-full" in problem for problem in problems)  # an id with no fixture is named
    assert any("runs/reward_zephyr_7b" in problem for problem in problems)


def test_a_fast_subset_rehearses_without_failure(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "dress_rehearsal.py"),
            "--only",
            *FAST_SUBSET,
            "--keep",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    last = run.stdout.strip().splitlines()[-1]
    assert last == f"configs_run={len(FAST_SUBSET)} configs_total={len(FAST_SUBSET)} failures=0", run.stdout[
        -3000:
    ]
