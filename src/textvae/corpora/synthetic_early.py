"""The embedded corpus with its label at the start: ``textvae data prepare synthetic --variant early``.

A variant of ``textvae.corpora.synthetic`` (grammar-v3) for the question of issue 24: do the demo's findings depend on
where the label sits? grammar-v3 ends 80 % of its sentences with a sentiment tag, which an LSTM encoder's
final state sees best; here the label (the sentiment) is expressed **only in the first half of every sentence
and never in its last third**, while the tense (verb forms, the time adverbial near the end), the subject
(pronouns, possessives, agreement) and the topic (verbs, nouns, places) still shape words across the sentence.

Template: ``OPENER , SUBJ [ADV] VERB NP [PREP NP] [and|but CLAUSE] [TIME] MARK`` (6-20 tokens), where only
the opener (two words, ``highly recommended`` / ``never again`` ...: grammar-v3's closing tags moved to the
front, in every sentence), the adverb, a
love/hate verb and the first noun phrase's evaluative adjective carry the sentiment. Every chance of the
template (the table ``FORM``), the connective, the clause (a neutral adjective or feeling), the places' and
the final mark's words are the same for both sentiments, and all openers have two words, so the positions of
the sentiment words do not depend on the sentiment; a sentence whose last sentiment word is not in its first
half (position ≥ n / 2, counting from 0, of n tokens) is drawn again, as one outside 6-20 tokens is. The
lexicon (topics, subjects, tenses, Zipf-like choices, 8 % off-topic words, 6 % flipped polarity) is
grammar-v3's. ``tests/test_synthetic_early.py`` checks the property on generated text.
"""
from __future__ import annotations

import random

from textvae import DEFAULT_SEED
from textvae.corpora import synthetic as v3
from textvae.corpora.synthetic import Example

NAME = "early"             # `textvae data prepare synthetic --variant early`
GRAMMAR = "grammar-early-v1"  # the version written to stats.json and factors.json
DESCRIPTION = (f"embedded latent-factor grammar corpus (textvae.corpora.synthetic_early {GRAMMAR}, the label only in the "
               "first half of each sentence): factors topic (6), sentiment (2), tense (3), subject (6); "
               "label = sentiment (0 negative, 1 positive)")
DEFAULT_SIZES = v3.DEFAULT_SIZES
LABEL_FACTOR = v3.LABEL_FACTOR
MIN_LEN, MAX_LEN = v3.MIN_LEN, v3.MAX_LEN

OPENERS = {  # two words each, so that an opener's length says nothing about the sentiment
    "positive": ("highly recommended", "loved it", "worth it", "pure joy"),
    "negative": ("never again", "avoid it", "total waste", "so disappointing"),
}
NEUTRAL_FEELINGS = ("busy", "hungry", "calm", "sleepy", "curious", "surprised")
# Chances of the optional parts, the same for both sentiments.
FORM = {
    "opener": 1.0,
    "adverb": 0.45,
    "sentiment_verb": 0.15,
    "sentiment_adj": 0.6,   # the first noun phrase's adjective is evaluative (else topic adjective 0.15, none)
    "topic_adj": 0.15,
    "pp": 0.65,
    "clause": 0.75,
    "but": 0.3,             # the clause's connective is `but` (else `and`)
    "clause_it": 0.5,
    "intens": 0.2,
    "time": 0.75,
    "exclaim": 0.3,         # the final mark is `!` (else `.`)
}


def sentiment_words() -> set[str]:
    """Every word that only a sentiment chooses (in openers, adverbs, love/hate verbs, evaluative adjectives;
    not `it` and `so`, which the clause and the intensifiers use too)."""
    words = {w for phrases in OPENERS.values() for p in phrases for w in p.split()}
    for lex in v3._LEXICON.sent.values():
        words.update(lex["advs"])
        words.update(lex["adjs"])
        for forms in lex["verbs"]:
            words.update(forms)
    return words - {"it"} - set(v3._INTENS)


class _EarlyGen(v3._Gen):
    def sentence_with_positions(self, topic: str, sentiment: str, tense: str, subject: str
                                ) -> tuple[list[str], list[int]]:
        """The tokens, and the positions of the words the sentiment chose."""
        forms, possessive, third_sg, _plural = v3._SUBJ[subject]
        words: list[str] = []
        marked: list[int] = []

        def add(tokens: list[str], carries_sentiment: bool = False) -> None:
            if carries_sentiment:
                marked.extend(range(len(words), len(words) + len(tokens)))
            words.extend(tokens)

        if self.flip(FORM["opener"]):
            polarity = self.sent_lex(sentiment) is v3._LEXICON.sent["positive"]
            add(self.pick(OPENERS["positive" if polarity else "negative"], 1.0).split(), True)
            add([","])
        subj_words = forms[0] if len(forms) == 1 or self.flip(0.7) else self.pick(forms[1:], 1.0)
        add(subj_words.split())
        if self.flip(FORM["adverb"]):
            add([self.pick(self.sent_lex(sentiment)["advs"], 1.1)], True)
        if self.flip(FORM["sentiment_verb"]):
            verb = self.verb(self.pick(self.sent_lex(sentiment)["verbs"], 1.1), tense, third_sg)
            add(verb[:-1])
            add(verb[-1:], True)
        else:
            add(self.verb(self.pick(self.topic_lex(topic)["verbs"], 1.1), tense, third_sg))
        lex = self.topic_lex(topic)
        forms_n = self.pick(lex["nouns"], 1.1)
        noun = forms_n[1] if self.flip(0.2) else forms_n[0]
        add(self.determiner(possessive))
        r = self.rng.random()
        if r < FORM["sentiment_adj"]:
            add([self.pick(self.sent_lex(sentiment)["adjs"], 1.1)], True)
        elif r < FORM["sentiment_adj"] + FORM["topic_adj"]:
            add([self.pick(self.topic_lex(topic)["adjs"], 1.1)])
        add([noun])
        if self.flip(FORM["pp"]):
            lex = self.topic_lex(topic)
            add([lex["prep"]] + self.determiner(possessive))
            if self.flip(FORM["topic_adj"]):
                add([self.pick(self.topic_lex(topic)["adjs"], 1.1)])
            add([self.pick(lex["places"], 1.1)])
        if self.flip(FORM["clause"]):
            add(["but" if self.flip(FORM["but"]) else "and"])
            if self.flip(FORM["clause_it"]):
                add(["it"] + self.copula(tense, None))
                tail = self.pick(self.topic_lex(topic)["adjs"], 1.1)
            else:
                pron = v3._SUBJ[subject][0][0]
                feel = {"past": ["felt"], "future": ["will", "feel"]}.get(tense, ["feels" if third_sg else "feel"])
                add([pron] + feel)
                tail = self.pick(NEUTRAL_FEELINGS, 1.1)
            if self.flip(FORM["intens"]):
                add([self.pick(v3._INTENS, 1.1)])
            add([tail])
        if self.flip(FORM["time"]):
            add(self.pick(v3._TIME[tense], 1.1).split())
        add(["!" if self.flip(FORM["exclaim"]) else "."])
        return words, marked

    def example(self) -> Example:
        rng = self.rng
        while True:
            f = {"topic": rng.choice(v3.TOPICS), "sentiment": rng.choice(v3.SENTIMENTS),
                 "tense": rng.choice(v3.TENSES), "subject": rng.choice(v3.SUBJECTS)}
            toks, marked = self.sentence_with_positions(f["topic"], f["sentiment"], f["tense"], f["subject"])
            if MIN_LEN <= len(toks) <= MAX_LEN and all(2 * i < len(toks) for i in marked):
                return Example(toks, v3.SENTIMENTS.index(f["sentiment"]), f)


def generate(seed: int = DEFAULT_SEED, sizes: dict[str, int] | None = None) -> dict[str, list[Example]]:
    """``{split: [Example]}``; deterministic given ``seed`` (and independent across splits)."""
    sizes = sizes or dict(zip(("train", "valid", "test"), DEFAULT_SIZES))
    return {split: _generate_split(seed, split, int(n)) for split, n in sizes.items()}


def _generate_split(seed: int, split: str, n: int) -> list[Example]:
    gen = _EarlyGen(random.Random(f"{seed}:{NAME}:{split}"))
    return [gen.example() for _ in range(n)]


def describe() -> dict:
    """The factors, their values and the label mapping (written to ``factors.json``)."""
    out = v3.describe()
    out.update({"generator": f"textvae.corpora.synthetic_early {GRAMMAR}",
                "label_position": "first half of the sentence only (never its last third)"})
    return out
