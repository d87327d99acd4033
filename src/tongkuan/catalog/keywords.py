"""Words for keyword search over Chinese and English titles. No SQL here.

Chinese has no spaces, so titles are segmented with jieba in search mode (which also emits
the shorter words inside long ones: 黄金水 → 黄金, 金水, 黄金水) and, beside those words,
every pair of adjacent Chinese characters. The pairs make a query match however jieba
happens to cut it in a title, so a part of a word still finds the whole (on Product1M
titles: nDCG@10 0.665 with words + pairs, 0.643 with words alone; see docs/benchmarks.md).
Each title's single Chinese characters are kept too, apart from its words (`characters`): a
Chinese character standing alone in a query (鞋, or 女 in "女 连衣裙") must be in every title
found, and matches wherever it stands (鞋 finds 运动鞋 and 高跟鞋); it filters, and never
changes how the query's words rank. Two Chinese characters are always a pair, so a
two-character query finds every title holding them. Latin words are lower-cased and, in
queries, matched as prefixes (hydra → hydrating).
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import jieba

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# a word: letters and digits only. "_" counts as \w for re but separates tokens in FTS5, so a
# term holding one would become an empty phrase and match nothing.
_WORD = re.compile(r"[^\W_]+")
_LATIN_PREFIX_MIN = 3
MAX_TERM = 100  # shorter Latin words match only whole words (ml, 3, x)
VERSION = "2"  # of the terms stored for a title: a store re-derives them all when it changes

_segmenter: jieba.Tokenizer | None = None
_segmenter_lock = threading.Lock()


def _jieba() -> jieba.Tokenizer:
    """One jieba tokenizer per process, its dictionary loaded on first use (~0.6 s)."""
    global _segmenter
    with _segmenter_lock:
        if _segmenter is None:
            jieba.setLogLevel(logging.WARNING)
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()
            _segmenter = tokenizer
        return _segmenter


def normalise(text: str) -> str:
    """Full-width to half-width, compatibility forms folded, lower case."""
    return unicodedata.normalize("NFKC", text).lower()


def _is_term(word: str) -> bool:
    """Letters and digits only, and not absurdly long (PostgreSQL refuses lexemes of 2 KB;
    no one searches for a 100-character word)."""
    return 0 < len(word) <= MAX_TERM and _WORD.fullmatch(word) is not None


def _is_cjk(word: str) -> bool:
    return _CJK_RUN.fullmatch(word) is not None


def _pairs(text: str) -> list[str]:
    pairs: list[str] = []
    for run in _CJK_RUN.findall(text):
        pairs += [run[i : i + 2] for i in range(len(run) - 1)] or [run]
    return pairs


def words(text: str) -> list[str]:
    """The distinct index terms of `text`: jieba words (search mode) plus Chinese character pairs."""
    text = normalise(text)
    found = [w for w in (t.strip() for t in _jieba().cut_for_search(text)) if _is_term(w)]
    return list(dict.fromkeys(found + _pairs(text)))


def characters(text: str) -> list[str]:
    """The distinct Chinese characters of `text`: what a one-character query matches."""
    return list(dict.fromkeys(char for run in _CJK_RUN.findall(normalise(text)) for char in run))


def document(text: str) -> str:
    """`text` as the space-separated terms stored in the full-text index."""
    return " ".join(words(text))


def character_document(text: str) -> str:
    """`text`'s single Chinese characters, space-separated, stored apart from its words."""
    return " ".join(characters(text))


@dataclass(frozen=True)
class Term:
    """One query term. `prefix` terms also match longer words that start with them; a
    `required` term must be in every match when results are sorted by price or sales; a
    `character` term (one Chinese character standing alone in the query) is matched against
    a title's characters, and must be in every match however results are ordered."""

    text: str
    prefix: bool
    required: bool
    character: bool = False


def query_terms(text: str) -> list[Term]:
    """The terms of a keyword query.

    Ranked by relevance, any word term may match and more, rarer matches rank higher. Sorted
    by price or sales, a title must hold every required term: each Latin word and each pair
    of Chinese characters of the query, which is close to "contains every query word". A
    Chinese character standing alone is a `character` term, which every match holds.
    """
    text = normalise(text)
    terms: dict[str, Term] = {}
    for pair in _pairs(text):
        terms.setdefault(pair, Term(pair, prefix=False, required=True, character=len(pair) == 1))
    for word in (t.strip() for t in _jieba().cut_for_search(text)):
        if not _is_term(word) or word in terms:
            continue
        if _is_cjk(word):
            terms[word] = Term(word, prefix=False, required=False)  # a whole word: a bonus when present
        else:
            terms[word] = Term(word, prefix=len(word) >= _LATIN_PREFIX_MIN, required=True)
    return list(terms.values())


def match_expression(terms: list[Term], every: bool = False) -> str:
    """An FTS5 MATCH expression: any term, or with `every` all required terms. Each term is
    quoted, so no query syntax leaks through."""
    chosen = [t for t in terms if t.required] if every else terms
    quoted = ['"' + t.text.replace('"', '""') + '"' + ("*" if t.prefix else "") for t in chosen]
    return (" AND " if every else " OR ").join(quoted)


def searched_text(title: str, picture_words: Iterable[str | None]) -> str:
    """What keyword search matches for a product: its title and the words read on its
    pictures (so a product whose picture says "Oatly" is found by "oatly")."""
    read = " ".join(words for words in picture_words if words)
    return f"{title}\n{read}" if read else title
