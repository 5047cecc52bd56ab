"""Rule matching of the support bot: a plain module, no database, no network.

Text is normalized (lower case, accents and punctuation gone, synonyms mapped
to one canonical word) and split into words; a pattern matches when each of
its `+`-separated terms occurs as a whole phrase of words. So "hi" matches
"Hi there!" but never "this" or "high". Rules are tried highest priority first.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

# What a rule does when it fires. Data actions answer from the client's devices.
ACTIONS = ("reply", "handoff", "today", "yesterday", "latest_alert", "limit", "top_device", "spend")
DATA_ACTIONS = ("today", "yesterday", "latest_alert", "limit", "top_device", "spend")
TERM_SEPARATOR = "+"
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Rule:
    """A bot rule as the matcher sees it."""

    name: str
    patterns: tuple[str, ...]
    answer: str
    action: str = "reply"
    priority: int = 0
    enabled: bool = True
    id: int | None = None


@dataclass(frozen=True)
class Match:
    """The rule that fired and the pattern that made it fire."""

    rule: Rule
    pattern: str


def words(text: str) -> list[str]:
    """Return the lower-case words of `text`, accents and punctuation removed."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    # "what's" and "whats" are the same word to a person typing fast.
    plain = re.sub(r"['’`]", "", plain)
    return _WORD.findall(plain)


@dataclass(frozen=True)
class Vocabulary:
    """Synonyms: every variant (one or more words) maps to a canonical word."""

    variants: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = field(default=())

    @classmethod
    def from_mapping(cls, synonyms: Mapping[str, Iterable[str]]) -> Vocabulary:
        """Build a vocabulary from {canonical: [variant, …]}."""
        pairs = []
        for canonical, variants in synonyms.items():
            target = tuple(words(canonical))
            for variant in variants:
                source = tuple(words(variant))
                if source and source != target:
                    pairs.append((source, target))
        # Longest variants first so "good morning" wins over "morning".
        pairs.sort(key=lambda pair: -len(pair[0]))
        return cls(tuple(pairs))

    @cached_property
    def _variants_by_first_word(self) -> dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]]:
        # Only the variants that start with the word at hand can match there; each
        # list keeps the longest-first order. (The bot matches every client message.)
        index: dict[str, list] = {}
        for source, target in self.variants:
            index.setdefault(source[0], []).append((source, target))
        return index

    @cached_property
    def _pattern_terms(self) -> dict[str, tuple[tuple[str, ...], ...]]:
        return {}

    def canonical(self, tokens: list[str]) -> tuple[str, ...]:
        """Replace every synonym variant in `tokens` by its canonical words."""
        result: list[str] = []
        position = 0
        while position < len(tokens):
            for source, target in self._variants_by_first_word.get(tokens[position], ()):
                if tuple(tokens[position:position + len(source)]) == source:
                    result.extend(target)
                    position += len(source)
                    break
            else:
                result.append(tokens[position])
                position += 1
        return tuple(result)

    def normalize(self, text: str) -> tuple[str, ...]:
        """Return the canonical words of `text`."""
        return self.canonical(words(text))

    def terms(self, pattern: str) -> tuple[tuple[str, ...], ...]:
        """Return the canonical words of each `+`-separated term of a rule pattern (memoized)."""
        terms = self._pattern_terms.get(pattern)
        if terms is None:
            normalized = (self.normalize(term) for term in pattern.split(TERM_SEPARATOR))
            terms = self._pattern_terms[pattern] = tuple(term for term in normalized if term)
        return terms


def _contains(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    """Tell whether `needle` occurs as consecutive whole words in `haystack`."""
    if not needle:
        return False
    size = len(needle)
    return any(haystack[i:i + size] == needle for i in range(len(haystack) - size + 1))


def pattern_matches(pattern: str, message_words: tuple[str, ...], vocabulary: Vocabulary) -> bool:
    """Tell whether every term of `pattern` occurs in the message's words."""
    terms = vocabulary.terms(pattern)
    return bool(terms) and all(_contains(message_words, term) for term in terms)


def ordered(rules: Iterable[Rule]) -> list[Rule]:
    """Return the enabled rules, highest priority first (ties: lowest id first)."""
    enabled = [rule for rule in rules if rule.enabled]
    return sorted(enabled, key=lambda rule: (-rule.priority, rule.id or 0, rule.name))


def match(text: str, rules: Iterable[Rule], vocabulary: Vocabulary) -> Match | None:
    """Return the first rule (by priority) with a pattern matching `text`, or None."""
    message_words = vocabulary.normalize(text)
    if not message_words:
        return None
    for rule in ordered(rules):
        for pattern in rule.patterns:
            if pattern_matches(pattern, message_words, vocabulary):
                return Match(rule, pattern)
    return None


def validate_rule(name: str, patterns: list[str], answer: str, action: str) -> list[str]:
    """Return what is wrong with a rule as an admin typed it (empty when valid)."""
    problems = []
    if not name.strip() or len(name) > 80:
        problems.append("name is required (at most 80 characters)")
    if not any(words(pattern) for pattern in patterns):
        problems.append("at least one pattern with a word is required")
    if action not in ACTIONS:
        problems.append(f"action must be one of {', '.join(ACTIONS)}")
    if action != "handoff" and action not in DATA_ACTIONS and not answer.strip():
        problems.append("an answer is required")
    if len(answer) > 2000:
        problems.append("the answer is limited to 2000 characters")
    return problems
