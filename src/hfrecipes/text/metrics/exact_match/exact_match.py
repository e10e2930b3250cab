"""Exact match as an `evaluate` metric module that loads offline.

`evaluate.load("exact_match")` downloads the Hub's script; this module ships inside hfrecipes and loads from
its directory (`hfrecipes.text.metric_modules.load_metric("exact_match")`). It is self-contained, as `evaluate`
copies it into its module cache and imports it on its own; `evaluate` scans its imports for dependencies,
hence one import per line.
"""

import re
import string

import datasets
import evaluate

_DESCRIPTION = (
    "Fraction of predictions identical to their reference, optionally after ignoring case, punctuation, "
    "and leading/trailing/repeated whitespace."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): model outputs.
    references (list of str): one reference per prediction.
    ignore_case (bool): compare case-folded strings. Default False.
    ignore_punctuation (bool): remove ASCII punctuation before comparing. Default False.
    ignore_whitespace (bool): strip both ends and collapse runs of whitespace to one space. Default False.
Returns:
    exact_match (float): fraction of exact matches, in [0, 1].
Example:
    >>> metric = hfrecipes.text.metric_modules.load_metric("exact_match")
    >>> metric.compute(predictions=["Paris ", "Rome"], references=["paris", "Madrid"],
    ...                ignore_case=True, ignore_whitespace=True)
    {'exact_match': 0.5}
"""

_CITATION = ""

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def _normalize(text, ignore_case, ignore_punctuation, ignore_whitespace):
    if ignore_case:
        text = text.casefold()
    if ignore_punctuation:
        text = _PUNCTUATION.sub("", text)
    if ignore_whitespace:
        text = " ".join(text.split())
    return text


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string", id="sequence"),
                    "references": datasets.Value("string", id="sequence"),
                }
            ),
        )

    def _compute(
        self, predictions, references, ignore_case=False, ignore_punctuation=False, ignore_whitespace=False
    ):
        if not predictions:
            raise ValueError("exact_match needs at least one prediction/reference pair.")
        options = (ignore_case, ignore_punctuation, ignore_whitespace)
        matches = [
            _normalize(prediction, *options) == _normalize(reference, *options)
            for prediction, reference in zip(predictions, references, strict=True)
        ]
        return {"exact_match": sum(matches) / len(matches)}
