"""Publishing as Trainer and TRL do it: the push request is taken out of the arguments at the start of a stage, the
finished directory goes up as one commit without pickles or checkpoints, `hub_private_repo` is honoured, the
default repository is `<the token's user>/<output dir name>`, and the card's license and base model are derived
from the chain of stages. `HfApi` is replaced by a recorder: the calls themselves are asserted."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.errors import OfflineModeIsEnabled
from transformers import TrainingArguments

from hfrecipes.cli.commands import main as cli
from hfrecipes.core import hub
from hfrecipes.core.args import PublishArguments
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.core.stages import PushRequest, Stage, start_stage, take_push_request

TOKEN = "hf_RECORDERtoken0123456789abcdefABCDEF"


class RecordingApi:
    """Stands in for `huggingface_hub.HfApi`: records every call, uploads nothing."""

    calls: list[tuple] = []

    def __init__(self, token=None, **_):
        self.token = token

    def create_repo(self, repo_id, *, private=None, exist_ok=False, **_):
        self.calls.append(("create_repo", repo_id, private, exist_ok, self.token))
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"token-user/{repo_id}")

    def create_commit(self, repo_id, operations, *, commit_message, **_):
        self.calls.append(
            ("create_commit", repo_id, sorted(op.path_in_repo for op in operations), self.token)
        )
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))

    def model_info(self, repo_id, **_):
        self.calls.append(("model_info", repo_id))
        return SimpleNamespace(card_data=SimpleNamespace(license="llama3.2"))


@pytest.fixture
def recorder(monkeypatch):
    RecordingApi.calls = []
    monkeypatch.setattr(hub, "HfApi", RecordingApi)
    # Only the push and the card's license look-up go to the recorder; the rest stays offline. (Not by deleting
    # HF_HUB_OFFLINE: `datasets.map(num_proc=...)` rebinds os.environ, and monkeypatch would restore a stale copy.)
    monkeypatch.setattr(hub, "hub_offline", lambda: False)
    return RecordingApi.calls


def finished_stage(tmp_path: Path, name: str = "my-stage", **stage_fields) -> tuple[Stage, Path]:
    """A stage finished through `Stage.finish` with a few files, a pickle and a checkpoint among them."""
    stage = Stage(
        recipe="text/sft",
        output_dir=tmp_path / name,
        inputs=stage_fields.pop("inputs", {}),
        push=stage_fields.pop("push", None),
        license=stage_fields.pop("license", None),
    )
    (stage.output_dir / "checkpoint-2").mkdir(parents=True)
    (stage.output_dir / "checkpoint-2" / "optimizer.pt").write_bytes(b"optimizer state")
    with stage.staging() as staging:
        (staging / "model.safetensors").write_bytes(b"weights")
        (staging / "config.json").write_text("{}")
        (staging / "training_args.bin").write_bytes(b"pickled arguments")
        if stage_fields.pop("adapter", False):
            (staging / "adapter_config.json").write_text("{}")
        stage.finish(
            staging,
            config={},
            metrics={"accuracy": 0.5},
            card={"title": "t", "description": "d", "usage": "u", **stage_fields},
        )
    return stage, stage.output_dir


def test_a_private_push_creates_a_private_repo_in_one_commit_without_pickles_or_checkpoints(
    tmp_path, recorder
):
    stage, out = finished_stage(tmp_path, push=PushRequest("me/tiny", private=True, token=TOKEN))
    creates = [c for c in recorder if c[0] == "create_repo"]
    commits = [c for c in recorder if c[0] in ("create_commit", "upload_folder")]
    assert creates == [("create_repo", "me/tiny", True, True, TOKEN)]
    assert len(commits) == 1 and commits[0][0] == "create_commit"
    files = commits[0][2]
    assert {"model.safetensors", "config.json", "README.md", "lineage.json", "metrics.json"} <= set(files)
    assert not [f for f in files if f.endswith((".bin", ".pt")) or f.startswith("checkpoint-")], files
    assert not (out / "training_args.bin").exists()  # removed from the stage itself, not only from the upload
    assert TOKEN not in "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())


def test_the_default_repo_is_the_output_dir_name_under_the_token_user(tmp_path, recorder):
    finished_stage(tmp_path, name="sft-run-7", push=PushRequest(None, private=None, token=TOKEN))
    assert recorder[0] == ("create_repo", "sft-run-7", None, True, TOKEN)
    assert recorder[1][:2] == ("create_commit", "token-user/sft-run-7")


def test_push_without_a_token_or_offline_says_so_and_uploads_nothing(tmp_path, recorder, monkeypatch):
    _, out = finished_stage(tmp_path)
    monkeypatch.setattr(hub, "get_token", lambda: None)
    with pytest.raises(RecipeInputError, match="No Hugging Face token"):
        hub.push_output_dir(out, "me/x")
    monkeypatch.setattr(hub, "hub_offline", lambda: True)
    with pytest.raises(RecipeInputError, match="HF_HUB_OFFLINE"):
        hub.push_output_dir(out, "me/x", token=TOKEN)
    assert recorder == []


def test_start_takes_the_push_request_and_token_out_of_training_arguments(tmp_path):
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        push_to_hub=True,
        hub_model_id="me/m",
        hub_private_repo=True,
        hub_token=TOKEN,
        report_to="none",
        use_cpu=True,
    )
    stage = start_stage("text/sft", args)
    assert stage.push == PushRequest("me/m", private=True, token=TOKEN)
    assert args.hub_token is None and args.push_to_hub is False  # Trainer pickles these arguments
    assert TOKEN not in repr(stage) and TOKEN not in json.dumps(args.to_dict())


def test_publish_arguments_of_non_trainer_recipes_mean_what_they_mean_in_trainer(tmp_path):
    publish = PublishArguments(push_to_hub=True, hub_private_repo=True, hub_token=TOKEN, license="mit")
    request = take_push_request(SimpleNamespace(output_dir=str(tmp_path), seed=0), publish)
    assert request == PushRequest(None, private=True, token=TOKEN) and publish.hub_token is None
    assert take_push_request(PublishArguments(hub_model_id="me/x")) is None  # hub_model_id alone is no push


def test_license_is_the_argument_else_the_base_model_s_never_a_constant(tmp_path, recorder):
    _, out = finished_stage(tmp_path, name="plain")
    assert "license" not in ModelCard.load(out / "README.md").data.to_dict()
    _, out = finished_stage(tmp_path, name="chosen", license="mit")
    assert ModelCard.load(out / "README.md").data.license == "mit"
    _, out = finished_stage(tmp_path, name="from-hub", inputs={"model": "meta-llama/Llama-3.2-1B"})
    card = ModelCard.load(out / "README.md").data
    assert card.license == "llama3.2" and card.base_model == "meta-llama/Llama-3.2-1B"


def test_base_model_and_license_follow_a_chain_of_local_stages_to_the_root_hub_model(tmp_path, recorder):
    _, sft = finished_stage(tmp_path, name="sft", inputs={"model": "Qwen/Qwen2.5-0.5B"}, license="apache-2.0")
    _, dpo = finished_stage(tmp_path, name="dpo", inputs={"model": str(sft)})
    _, grpo = finished_stage(tmp_path, name="grpo", inputs={"model": str(dpo), "reward_model": "x/rm"})
    card = ModelCard.load(grpo / "README.md").data
    assert card.base_model == "Qwen/Qwen2.5-0.5B" and card.license == "apache-2.0"
    _, scratch = finished_stage(tmp_path, name="scratch")
    _, child = finished_stage(tmp_path, name="child", inputs={"model": str(scratch)})
    assert ModelCard.load(child / "README.md").data.base_model is None


def test_an_adapter_is_tagged_library_name_peft(tmp_path, recorder):
    _, out = finished_stage(tmp_path, name="lora", adapter=True, inputs={"model": "Qwen/Qwen2.5-0.5B"})
    card = ModelCard.load(out / "README.md").data
    assert card.library_name == "peft" and card.base_model == "Qwen/Qwen2.5-0.5B"
    _, full = finished_stage(tmp_path, name="full")
    assert ModelCard.load(full / "README.md").data.library_name == "transformers"


def test_offline_export_holds_exactly_what_push_uploads(tmp_path, recorder):
    _, out = finished_stage(tmp_path, push=PushRequest("me/tiny", private=False, token=TOKEN))
    exported = hub.offline_export(out, tmp_path / "export")
    assert sorted(p.relative_to(tmp_path / "export").as_posix() for p in exported) == recorder[-1][2]


def test_the_push_command_publishes_like_a_recipe(tmp_path, recorder, capsys, monkeypatch):
    _, out = finished_stage(tmp_path, name="finished")
    monkeypatch.setattr(hub, "get_token", lambda: None)
    assert cli(["push", str(out), "--private"]) == 2  # no token anywhere: one line, nothing created
    assert "No Hugging Face token" in capsys.readouterr().err and recorder == []
    monkeypatch.setattr(hub, "get_token", lambda: TOKEN)
    assert cli(["push", str(out), "--private"]) == 0
    assert recorder[0] == ("create_repo", "finished", True, True, TOKEN)
    assert [c[0] for c in recorder] == ["create_repo", "create_commit"]


def test_a_prepared_dataset_is_pushed_to_a_dataset_repository(tmp_path, recorder, monkeypatch):
    seen = []
    monkeypatch.setattr(
        RecordingApi,
        "create_repo",
        lambda self, repo_id, **kw: seen.append(kw["repo_type"]) or SimpleNamespace(repo_id=f"u/{repo_id}"),
    )
    stage = Stage(
        recipe="text/prepare_data",
        output_dir=tmp_path / "prepared",
        inputs={},
        push=PushRequest(None, private=True, token=TOKEN),
    )
    with stage.staging() as staging:
        (staging / "data.arrow").write_bytes(b"rows")
        stage.finish(
            staging,
            config={},
            metrics={"rows_out": 1},
            report={"source": "builtin:x", "steps": []},
            card={"title": "prepared"},
            card_kind="dataset",
        )
    assert seen == ["dataset"]
    assert recorder[-1][0] == "create_commit" and "data.arrow" in recorder[-1][2]


# --- inputs checked before any work ------------------------------------------------------------------------------


def test_a_missing_shipped_stage_names_the_command_that_makes_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeInputError) as caught:
        hub.check_input_reference("model", "runs/sft_chat_tiny")
    message = str(caught.value)
    assert "runs/sft_chat_tiny does not exist" in message and "\n" not in message
    assert "accelerate launch recipes/text/sft.py --config recipes/text/configs/sft_chat_tiny.yaml" in message


@pytest.mark.parametrize(
    "reference", ["runs/my_own_stage", "./model", "data/train.jsonl", "a/b/c", "~/weights"]
)
def test_a_missing_local_path_is_never_taken_for_a_hub_id(reference, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub, "HfApi", None)  # any Hub call would fail loudly
    with pytest.raises(RecipeInputError, match="does not exist"):
        hub.check_input_reference("model", reference)


def test_an_unreachable_hub_id_gets_one_line_naming_hf_hub_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RecipeInputError, match="HF_HUB_OFFLINE=1") as caught:
        hub.check_input_reference("model", "someone/never-cached-model")
    assert "\n" not in str(caught.value)

    class Unreachable:
        def repo_info(self, *args, **kwargs):
            raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(hub, "hub_offline", lambda: False)
    monkeypatch.setattr(hub, "HfApi", Unreachable)
    with pytest.raises(RecipeInputError, match="HF_HUB_OFFLINE") as caught:
        hub.check_input_reference("data", "someone/never-cached-dataset")
    assert "ConnectionError" in str(caught.value) and "\n" not in str(caught.value)
    hub.check_input_reference("data", "builtin:arithmetic")  # generated here: nothing to check


def test_a_push_the_hub_client_refuses_as_offline_says_so(tmp_path, recorder, monkeypatch):
    def offline(self, *args, **kwargs):
        raise OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline mode is enabled.")

    _, out = finished_stage(tmp_path)
    monkeypatch.setattr(RecordingApi, "create_repo", offline)
    with pytest.raises(RecipeInputError, match="HF_HUB_OFFLINE=1 is set: pushing needs the network"):
        hub.push_output_dir(out, "me/x", token=TOKEN)
