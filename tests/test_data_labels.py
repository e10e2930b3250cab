import datasets
import pytest

from hfrecipes.core.data_report import DataReport
from hfrecipes.core.errors import RecipeInputError
from hfrecipes.data import parse_pipeline, run_pipeline


def run(rows: dict[str, list], **params):
    report = DataReport()
    dataset = datasets.Dataset.from_dict(rows)
    out = run_pipeline(dataset, parse_pipeline([{"contradictory_labels": params}]), report)
    return out, report.steps[-1]


def chat(user: str, assistant: str, system: str | None = None) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": system}] if system else []
    return [*turns, {"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


CLASSIFICATION = {
    "text": ["Great film!", "great   FILM!", "Great film! ", "Awful.", "awful.", "Fine.", "Fine."],
    "label": [1, 0, 1, 0, 1, 1, 1],
}


def test_classification_drop_removes_every_row_of_a_conflicting_group():
    out, record = run(CLASSIFICATION, strategy="drop")
    # "great film!" (1, 0, 1) and "awful." (0, 1) conflict after case/space folding; "Fine." agrees with itself.
    assert list(out["text"]) == ["Fine.", "Fine."]
    assert record.removed == 5
    assert record.details["layout"] == "classification"
    assert record.details["conflicting_groups"] == 2
    first = record.details["conflict_examples"][0]
    assert first["input"] == "Great film!" and first["labels"] == {"1": 2, "0": 1}


def test_classification_majority_keeps_the_most_frequent_label_and_drops_ties():
    out, record = run(CLASSIFICATION, strategy="majority")
    # "great film!": label 1 wins 2-1 (its two rows stay); "awful.": 1-1 tie, the whole group goes.
    assert list(zip(out["text"], out["label"], strict=True)) == [
        ("Great film!", 1),
        ("Great film! ", 1),
        ("Fine.", 1),
        ("Fine.", 1),
    ]
    assert record.details["tied_groups"] == 1 and record.removed == 3


def test_class_label_names_show_in_examples_and_text_answers_are_normalised():
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    report = DataReport()
    dataset = datasets.Dataset.from_dict({"text": ["ok", "OK"], "label": [0, 1]}, features=features)
    parse_pipeline(["contradictory_labels"])[0].apply(dataset, report)
    assert report.steps[-1].details["conflict_examples"][0]["labels"] == {"neg": 1, "pos": 1}

    # QA answers differing only in case/spacing agree; a different answer conflicts.
    out, record = run({"question": ["Capital of France?"] * 3, "answer": ["Paris", " paris", "PARIS "]})
    assert len(out) == 3 and record.removed == 0 and record.details["layout"] == "qa"
    out, record = run(
        {
            "question": ["Capital of France?", "capital of france?", "Capital of Italy?"],
            "answer": ["Paris", "Lyon", "Rome"],
        }
    )
    assert list(out["answer"]) == ["Rome"]


def test_sft_conflict_is_the_same_conversation_with_a_different_last_answer():
    rows = {
        "messages": [
            chat("What is 2+2?", "4"),
            chat("what is  2+2?", "5"),
            chat("What is 2+2?", "4", system="Answer tersely."),  # different context: no conflict
            chat("Name a colour.", "Blue"),
            chat("Name a colour.", "blue"),  # same answer after normalisation
            [{"role": "user", "content": "no answer yet"}],  # unlabeled: kept
        ]
    }
    out, record = run(rows)
    assert [m[-1]["content"] for m in out["messages"]] == ["4", "Blue", "blue", "no answer yet"]
    assert record.details["layout"] == "sft" and record.details["conflicting_groups"] == 1
    assert set(record.details["conflict_examples"][0]["labels"]) == {"4", "5"}


def test_sft_input_is_everything_before_the_last_assistant_turn():
    base = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    rows = {
        "messages": [
            [*base, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye"}],
            [*base, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "See you"}],
            [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hey"},
            ],  # earlier turn differs
        ]
    }
    out, record = run(rows, strategy="drop")
    assert len(out) == 1 and out["messages"][0][-1]["content"] == "Hey"


PREFERENCES = {
    "prompt": ["Pick one", "pick one", "Pick one", "Rank these", "Rank these", "Rank these", "Same?"],
    "chosen": ["A", "B", "A", "X", "Y", "X", "S"],
    "rejected": ["B", "A", "B", "Y", "Z", "Z", " s"],
}


def test_preferences_reversed_pairs_conflict_but_a_consistent_ranking_does_not():
    out, record = run(PREFERENCES)
    # "Pick one": A>B twice, B>A once -> conflict. "Rank these": X>Y, Y>Z, X>Z is a consistent ranking even
    # though Y is chosen in one row and rejected in another. "Same?": chosen == rejected contradicts itself.
    assert list(out["chosen"]) == ["X", "Y", "X"]
    assert record.details["layout"] == "preference"
    assert record.details["conflicting_groups"] == 1 and record.details["self_contradictory_rows"] == 1
    assert record.removed == 4

    out, record = run(PREFERENCES, strategy="majority")
    assert list(zip(out["prompt"], out["chosen"], strict=True)) == [
        ("Pick one", "A"),
        ("Pick one", "A"),
        ("Rank these", "X"),
        ("Rank these", "Y"),
        ("Rank these", "X"),
    ]
    assert record.details["tied_groups"] == 0


def test_preference_tie_drops_the_pair_under_majority():
    rows = {"prompt": ["p", "p", "q"], "chosen": ["A", "B", "A"], "rejected": ["B", "A", "B"]}
    out, record = run(rows, strategy="majority")
    assert list(out["prompt"]) == ["q"] and record.details["tied_groups"] == 1


def test_conversational_preferences_and_prompt_completion():
    prompt = [{"role": "user", "content": "Hi"}]
    good, bad = [{"role": "assistant", "content": "Hello"}], [{"role": "assistant", "content": "Go away"}]
    other = [{"role": "user", "content": "Bye"}]
    out, record = run(
        {"prompt": [prompt, prompt, other], "chosen": [good, bad, good], "rejected": [bad, good, bad]}
    )
    assert out["prompt"] == [other] and record.removed == 2

    out, record = run({"prompt": ["1+1=", "1+1=", "2+2="], "completion": ["2", "3", "4"]})
    assert list(out["prompt"]) == ["2+2="] and record.details["layout"] == "prompt_completion"


def test_no_conflicts_removes_nothing_and_keeps_the_dataset():
    rows = {"text": ["a", "b", "c", "a"], "label": [0, 1, 0, 0]}
    out, record = run(rows, strategy="majority")
    assert list(out["text"]) == rows["text"]
    assert record.removed == 0 and record.details["conflicting_groups"] == 0


def test_explicit_columns_and_unlabeled_rows():
    rows = {
        "title": ["T", "t", "T", "U"],
        "body": ["same body", "Same body", "other body", "x"],
        "category": ["news", "sport", "news", None],
        "id": [1, 2, 3, 4],
    }
    out, record = run(rows, input_columns=["title", "body"], label_column="category")
    assert list(out["id"]) == [3, 4]
    assert record.details["layout"] == "explicit"


def test_bad_parameters_and_undetectable_columns_are_refused():
    with pytest.raises(RecipeInputError, match=r"strategy must be one of \['drop', 'majority'\], got 'vote'"):
        parse_pipeline([{"contradictory_labels": {"strategy": "vote"}}])
    with pytest.raises(RecipeInputError, match="set both input_columns and label_column"):
        parse_pipeline([{"contradictory_labels": {"label_column": "label"}}])
    with pytest.raises(RecipeInputError, match="is also an input column"):
        parse_pipeline([{"contradictory_labels": {"input_columns": ["label"], "label_column": "label"}}])
    with pytest.raises(RecipeInputError, match="not columns"):
        parse_pipeline([{"contradictory_labels": {"columns": ["text"]}}])
    with pytest.raises(RecipeInputError, match="cannot tell inputs from labels"):
        run({"text": ["a"], "score": [1.0]})
    with pytest.raises(RecipeInputError, match=r"lacks"):
        run({"text": ["a"], "label": [1]}, input_columns=["body"], label_column="label")
