"""The text side of text-to-speech: normalisation (numbers spelled out, lower case), a character or
IPA-phoneme (espeak-ng --ipa) front end, and a character tokenizer built from the training transcripts (no
sentencepiece needed)."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast
from transformers.models.speecht5.number_normalizer import EnglishNumberNormalizer

from hfrecipes.builtins.speech import espeak_phonemes
from hfrecipes.core.errors import RecipeInputError

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0-3, as in SpeechT5's own tokenizer
SPACE = "▁"
TEXT_FRONTENDS = ("characters", "phonemes")


def normalize_transcript(text: str, lowercase: bool = True) -> str:
    """Unicode NFKC, numbers and currency spelled out (SpeechT5's English normaliser), typographic quotes and
    dashes made plain, whitespace collapsed, optionally lower-cased."""
    text = unicodedata.normalize("NFKC", str(text))
    text = text.translate(str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-"}))
    if any(ch.isdigit() for ch in text):
        text = EnglishNumberNormalizer()(text)
    text = " ".join(text.split())
    return text.lower() if lowercase else text


def text_symbols(
    text: str, frontend: str = "characters", voice: str = "en-us", lowercase: bool = True
) -> str:
    """What the tokenizer sees: the normalised transcript, or its IPA phonemes from espeak-ng."""
    if frontend not in TEXT_FRONTENDS:
        raise RecipeInputError(f"text_frontend must be one of {', '.join(TEXT_FRONTENDS)}, got {frontend!r}.")
    normalized = normalize_transcript(text, lowercase)
    if frontend == "phonemes":
        return espeak_phonemes(normalized, voice)
    return normalized


def build_char_tokenizer(texts: Iterable[str]):
    """A character tokenizer over the symbols of `texts` (space as '▁', like SpeechT5's spm_char model), ids
    0-3 = <s> <pad> </s> <unk>, '</s>' appended; a PreTrainedTokenizerFast that AutoTokenizer and
    SpeechT5Processor load without sentencepiece."""
    symbols = sorted({ch for text in texts for ch in text.replace(" ", SPACE)})
    if not symbols:
        raise RecipeInputError("Cannot build a character tokenizer: the training transcripts are empty.")
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for symbol in symbols:
        vocab.setdefault(symbol, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="never", split=False),
            pre_tokenizers.Split(Regex("."), behavior="isolated"),
        ]
    )
    tokenizer.decoder = decoders.Sequence(
        [decoders.Fuse(), decoders.Metaspace(replacement=SPACE, prepend_scheme="never")]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def out_of_vocabulary(texts: Iterable[str], tokenizer: Any) -> Counter:
    """Characters of `texts` the tokenizer maps to <unk>, with counts (spaces are '▁' in both tokenizers)."""
    vocab = set(tokenizer.get_vocab())
    counts: Counter = Counter()
    for text in texts:
        counts.update(ch for ch in text if ch != " " and ch not in vocab and f"{SPACE}{ch}" not in vocab)
    return counts
