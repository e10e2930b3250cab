import datasets
import pytest

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import parse_pipeline, run_pipeline
from hfrecipes.data.converters import (
    alpaca_to_messages,
    convert,
    hh_to_preference,
    prompt_completion_to_messages,
    transcript_to_messages,
)
from hfrecipes.data.formats import FORMATS, detect_format, validate_format


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


HH_CHOSEN = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: What is 2+2?\n\nAssistant: It is 4."
HH_REJECTED = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: What is 2+2?\n\nAssistant: Five."


def test_transcript_multi_turn_keeps_order_and_multiline_content():
    text = "\n\nHuman: line one\nline two\n\nAssistant: reply\n\nHuman: again\n\nAssistant: done"
    assert transcript_to_messages(text) == [
        user("line one\nline two"),
        assistant("reply"),
        user("again"),
        assistant("done"),
    ]


def test_transcript_drops_only_a_trailing_empty_assistant_marker():
    assert transcript_to_messages("Human: question?\n\nAssistant:") == [user("question?")]
    # "Assistant:" inside a line is content, not a turn marker.
    assert transcript_to_messages("\n\nHuman: say Assistant: hi\n\nAssistant: ok")[0] == user(
        "say Assistant: hi"
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("just some prose", r"No 'Human:'/'Assistant:' turns in transcript 'just some prose'"),
        (
            "\n\nAssistant: I start\n\nHuman: hm",
            r"roles out of order at turn 1: expected Human, got Assistant",
        ),
        ("\n\nHuman: a\n\nHuman: b\n\nAssistant: c", r"turn 2: expected Assistant, got Human in '.*Human: b"),
        ("preamble\n\nHuman: a\n\nAssistant: b", r"Text before the first 'Human:' turn"),
    ],
)
def test_malformed_transcripts_are_refused_with_a_snippet(text, match):
    with pytest.raises(RecipeInputError, match=match):
        transcript_to_messages(text)


def test_alpaca_with_and_without_input_and_system_prompt():
    with_input = alpaca_to_messages({"instruction": "Translate.", "input": "Bonjour", "output": "Hello"})
    assert with_input == {"messages": [user("Translate.\n\nBonjour"), assistant("Hello")]}
    without = alpaca_to_messages(
        {"instruction": "Say hi.", "input": "  ", "output": "hi"}, system_prompt="Be brief."
    )
    assert without["messages"] == [
        {"role": "system", "content": "Be brief."},
        user("Say hi."),
        assistant("hi"),
    ]


def test_prompt_completion_standard_and_conversational():
    assert prompt_completion_to_messages({"prompt": "2+2?", "completion": "4"}) == {
        "messages": [user("2+2?"), assistant("4")]
    }
    conversational = {"prompt": [user("hi"), assistant("yo"), user("2+2?")], "completion": [assistant("4")]}
    assert prompt_completion_to_messages(conversational)["messages"][-2:] == [user("2+2?"), assistant("4")]


def test_hh_preference_splits_the_shared_prefix():
    row = hh_to_preference({"chosen": HH_CHOSEN, "rejected": HH_REJECTED})
    assert row["prompt"] == [user("Hi there"), assistant("Hello!"), user("What is 2+2?")]
    assert row["chosen"] == [assistant("It is 4.")]
    assert row["rejected"] == [assistant("Five.")]


def test_hh_preference_refuses_transcripts_with_different_prefixes_or_no_final_reply():
    with pytest.raises(RecipeInputError, match=r"do not share.*turn 3: 'What is 2\+2\?' vs 'What is 3\+3\?'"):
        hh_to_preference({"chosen": HH_CHOSEN, "rejected": HH_REJECTED.replace("2+2", "3+3")})
    with pytest.raises(RecipeInputError, match=r"`rejected` does not end with an assistant turn"):
        hh_to_preference({"chosen": HH_CHOSEN, "rejected": "\n\nHuman: Hi there\n\nAssistant:"})


def test_detect_format_from_columns():
    def detect(**columns):
        return detect_format(datasets.Dataset.from_dict(columns))

    assert detect(instruction=["a"], input=[""], output=["b"], text=["### Instruction: a"]) == "alpaca"
    assert detect(chosen=[HH_CHOSEN], rejected=[HH_REJECTED]) == "hh"
    assert detect(prompt=["p"], chosen=["c"], rejected=["r"]) == "preference"
    assert detect(prompt=["p"], completion=["c"]) == "prompt_completion"
    assert detect(text=[HH_CHOSEN]) == "transcript"
    assert detect(text=["An ordinary document."]) == "text"
    assert detect(body=["x"]) is None


def test_convert_transcripts_and_alpaca_to_sft_keeps_other_columns():
    transcripts = datasets.Dataset.from_dict(
        {"text": [HH_CHOSEN, "\n\nHuman: a\n\nAssistant: b"], "id": [1, 2]}
    )
    sft = convert(transcripts, "sft")
    assert sft.column_names == ["id", "messages"] and sft["id"] == [1, 2]
    assert sft[1]["messages"] == [user("a"), assistant("b")]
    validate_format(sft, "sft")

    alpaca = datasets.Dataset.from_dict({"instruction": ["Add."], "input": ["1 1"], "output": ["2"]})
    assert convert(alpaca, "sft", system_prompt="S")[0]["messages"][0] == {"role": "system", "content": "S"}


def test_convert_hh_to_preference_and_prompt():
    hh = datasets.Dataset.from_dict({"chosen": [HH_CHOSEN], "rejected": [HH_REJECTED]})
    preference = convert(hh, "preference")
    assert sorted(preference.column_names) == ["chosen", "prompt", "rejected"]
    assert preference[0]["chosen"] == [assistant("It is 4.")]
    validate_format(preference, "preference")

    prompts = convert(hh, "prompt")
    assert prompts[0]["prompt"][-1] == user("What is 2+2?") and prompts[0]["answer"] == "It is 4."
    validate_format(prompts, "prompt")


def test_convert_counts_bad_rows_then_drops_them_on_request():
    hh = datasets.Dataset.from_dict(
        {
            "chosen": [HH_CHOSEN, "no markers here", HH_CHOSEN],
            "rejected": [HH_REJECTED, HH_REJECTED, HH_CHOSEN],
        }
    )
    with pytest.raises(
        RecipeInputError,
        match=r"2 of 3 rows.*row 1: No 'Human:'.*row 2: `chosen` and `rejected` are the same",
    ):
        convert(hh, "preference")
    report = DataReport()
    kept = convert(hh, "preference", on_error="drop", report=report)
    assert len(kept) == 1 and kept[0]["rejected"] == [assistant("Five.")]
    assert report.steps[-1].removed == 2
    assert report.steps[-1].details["problems"] == {"cannot convert": 1, "chosen equals rejected": 1}


def test_convert_refuses_impossible_targets():
    alpaca = datasets.Dataset.from_dict({"instruction": ["a"], "output": ["b"]})
    with pytest.raises(
        RecipeInputError, match=r"No converter from instruction/input/output.*to 'preference'"
    ):
        convert(alpaca, "preference")
    with pytest.raises(RecipeInputError, match=r"Cannot tell the data format from the columns \['body'\]"):
        convert(datasets.Dataset.from_dict({"body": ["x"]}), "sft")
    with pytest.raises(
        RecipeInputError, match=r"from_format='alpaca' needs column\(s\) \['instruction', 'output'\]"
    ):
        convert(datasets.Dataset.from_dict({"text": ["x"]}), "sft", from_format="alpaca")


def test_conversion_steps_run_from_a_yaml_pipeline():
    alpaca = datasets.Dataset.from_dict(
        {"instruction": ["Q1", "Q2"], "input": ["", "ctx"], "output": ["A1", "A2"]}
    )
    report = DataReport()
    out = run_pipeline(alpaca, parse_pipeline([{"to_messages": {"system_prompt": "Sys"}}]), report)
    assert out[1]["messages"] == [{"role": "system", "content": "Sys"}, user("Q2\n\nctx"), assistant("A2")]
    assert report.steps[-1].step == "to_messages" and report.steps[-1].details["from_format"] == "alpaca"

    hh = datasets.Dataset.from_dict({"chosen": [HH_CHOSEN], "rejected": [HH_REJECTED]})
    assert run_pipeline(hh, parse_pipeline(["to_preference"]), DataReport())[0]["rejected"] == [
        assistant("Five.")
    ]
    with pytest.raises(RecipeInputError, match=r"from_format must be 'auto' or one of preference, hh"):
        parse_pipeline([{"to_preference": {"from_format": "alpaca"}}])
    with pytest.raises(RecipeInputError, match=r"'to_messages' converts every row; it takes no `domains`"):
        parse_pipeline([{"to_messages": {"domains": ["chat"]}}])


def test_validate_missing_columns_names_them_and_the_converter():
    alpaca = datasets.Dataset.from_dict({"instruction": ["a"], "input": [""], "output": ["b"]})
    with pytest.raises(RecipeInputError) as err:
        validate_format(alpaca, "sft")
    message = str(err.value)
    assert "needs column(s) ['messages']" in message
    assert "['instruction', 'input', 'output']" in message
    assert "convert(dataset, 'sft') or the `to_messages` pipeline step" in message

    with pytest.raises(RecipeInputError, match=r"needs column\(s\) \['label'\].*no converter"):
        validate_format(datasets.Dataset.from_dict({"text": ["x"]}), "classification")
    with pytest.raises(RecipeInputError, match=r"Unknown data kind 'chat'; kinds: lm, sft"):
        validate_format(alpaca, "chat")


def test_validate_sft_structure_counts_rows_and_points_at_them():
    rows = [
        [user("hi"), assistant("hello")],  # valid
        [user("a"), user("b"), assistant("c")],  # roles out of order
        [user("a"), assistant("  ")],  # empty assistant turn
        [{"role": "system", "content": "s"}, assistant("I speak first")],  # first non-system role not user
        [user("q"), {"role": "narrator", "content": "x"}],  # unknown role
        [user("q"), assistant("a"), {"role": "tool", "content": "{}"}, assistant("b")],  # tool turn: valid
    ]
    with pytest.raises(RecipeInputError) as err:
        validate_format(datasets.Dataset.from_dict({"messages": rows}), "sft")
    message = str(err.value)
    assert message.startswith("4 of 6 rows are not valid 'sft' data (")
    assert "roles out of order: 2" in message and "empty assistant turn: 1" in message
    assert "row 1: messages[1] is a 'user' turn after 'user'" in message
    assert "row 2: messages[1] is an assistant turn with no content" in message
    assert "row 3: messages[1] is a 'assistant' turn after 'system'" in message
    assert "row 4: messages[1] has role 'narrator'" in message
    assert "row 0" not in message and "row 5" not in message

    validate_format(datasets.Dataset.from_dict({"messages": [rows[0], rows[5]]}), "sft")


def test_validate_preference_rejects_identical_pairs_in_both_layouts():
    standard = datasets.Dataset.from_dict(
        {"prompt": ["p", "q"], "chosen": ["good", "same"], "rejected": ["bad", "same"]}
    )
    with pytest.raises(RecipeInputError, match=r"1 of 2 rows .*chosen equals rejected: 1.*row 1:"):
        validate_format(standard, "preference")
    conversational = datasets.Dataset.from_dict(
        {"prompt": [[user("p")]], "chosen": [[assistant("x")]], "rejected": [[assistant("x")]]}
    )
    with pytest.raises(RecipeInputError, match=r"chosen equals rejected"):
        validate_format(conversational, "preference")
    validate_format(standard.select([0]), "preference")


def test_formats_table_lists_every_recipe_kind():
    assert FORMATS == {
        "lm": ("text",),
        "sft": ("messages",),
        "preference": ("prompt", "chosen", "rejected"),
        "prompt": ("prompt",),
        "classification": ("text", "label"),
    }
