"""A tiny, randomly initialised sentence-transformers text model (small BERT, WordPiece tokenizer
built from a caption corpus, mean pooling, normalised) standing in for all-MiniLM-L6-v2 where
that is not installed, e.g. on a GPU machine that only exercises the training loop."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from ml.vlm.backbone import quiet_transformers
from ml.vlm.text_tower import TEXT_DIM

_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_MAX_LENGTH = 128

# Anonymous-caption phrasing, so that typical captions split into a handful of word pieces.
_TOKENIZER_CORPUS = (
    "A row of {Object}s growing steadily in size from left to right.",
    "{Object}s spaced evenly around a circle, leaving its centre empty.",
    "A crowd of identical {Object}s with a single {Object} that does not belong.",
    "A large {Shape} built entirely out of many small {Object}s.",
    "A scattered arrangement of {Object}s that is mirrored exactly across a vertical line.",
    "A small {Object} sitting right in the middle of a larger {Object}.",
    "A tower of {Object}s stacked one directly on top of another.",
    "A tidy grid of {Object}s with exactly one place left empty.",
    "Rows of {Object}s, each row holding one more {Object} than the row above it.",
    "A line that alternates between a {Object} and a {Object}, again and again.",
    "Curious {Animal} peering out from behind a {Object}.",
    "The layers of a {Object} seen in cross section, like the layers of a {Planet}.",
    "A {Character} made out of {Material}, arranged to spell the {Word}.",
    "A {Color} {Shape} above a {Color} {Shape}; two {Shape} side by side.",
    "the quick brown fox jumps over the lazy dog 0 1 2 3 4 5 6 7 8 9",
)


def _corpus_vocabulary() -> dict[str, int]:
    """Special tokens, every character (word-initial and ##continuation) and every whole word
    of the corpus, in a fixed order. Built rather than trained: the tokenizers library's
    WordPiece trainer breaks ties differently from run to run, and the build must not."""
    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    words: set[str] = set()
    for line in _TOKENIZER_CORPUS:
        words.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(line)))
    characters = sorted({c for word in words for c in word})
    tokens = [
        *_SPECIAL_TOKENS,
        *characters,
        *(f"##{c}" for c in characters),
        *sorted(w for w in words if len(w) > 1),
    ]
    return {token: index for index, token in enumerate(tokens)}


def _wordpiece_tokenizer() -> PreTrainedTokenizerFast:
    vocab = _corpus_vocabulary()
    wordpiece = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=wordpiece,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=_MAX_LENGTH,
    )


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def build_tiny_text_model(
    out_dir: str | Path,
    *,
    seed: int = 0,
    dim: int = TEXT_DIM,
    num_layers: int = 1,
    num_heads: int = 4,
    intermediate_size: int = 64,
) -> Path:
    """Write a random sentence-transformers folder (BERT -> mean pooling -> normalise) whose
    embeddings have `dim` dimensions, loadable offline by `ml.vlm.TextTower`.
    The same seed gives the same files. Returns the folder."""
    if dim % num_heads:
        raise ValueError("dim must be a multiple of num_heads")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _wordpiece_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=dim,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=_MAX_LENGTH,
        pad_token_id=int(tokenizer.pad_token_id or 0),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config, add_pooling_layer=False)
    with quiet_transformers():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # The same module layout as all-MiniLM-L6-v2's folder: transformer, pooling, normalise.
    _write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            },
        ],
    )
    _write_json(
        out / "sentence_bert_config.json", {"max_seq_length": _MAX_LENGTH, "do_lower_case": False}
    )
    _write_json(
        out / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    (out / "2_Normalize").mkdir(exist_ok=True)
    return out
