"""The embedded corpus: sentences from a seeded latent-variable grammar (no network, seconds to generate).

Every sentence is generated from four discrete latent factors, drawn independently and uniformly, and each
factor shapes words across the whole sentence:

- ``topic`` (6 values: food, sports, music, travel, technology, garden) picks the object nouns, the verbs,
  the neutral adjectives and the prepositional phrase (each topic has its own preposition and places);
- ``sentiment`` (negative, positive) picks the evaluative adjectives, sometimes the verb (love/enjoy vs
  hate/regret), the connective of the second clause (``and`` vs ``but``) and its adjective or feeling, the
  closing tag (``highly recommended`` vs ``never again``; most sentences have one), and makes an adverb and
  ``!`` more or less likely;
- ``tense`` (past, present, future) picks every verb form, the copulas and the sentence-final time adverbial;
- ``subject`` (i, you, he, she, we, they) picks the subject, the possessive determiners, the pronoun of the
  second clause and the verb agreement.

Template: ``SUBJ [ADV] VERB NP [PREP NP] [CONJ CLAUSE] [TIME] [, TAG] MARK`` (6-20 tokens). The optional
parts' probabilities depend on the factors, so the form of a sentence, not only its words, carries them;
few choices are left that no factor explains (grammar-v1, whose optional parts were independent of the
factors, made an AE-pretrained VAE spend its latent on sentence form instead of the factors). The chances
are the table ``FORM``. grammar-v3 differs from v2 in one entry: the closing tag ends 80 % of the sentences
of either sentiment (v2: 30 % negative, 8 % positive), so that, as in review text, the label is the factor
the end of a sentence shows most; an LSTM encoder's final state summarises that end, and under v2 the
tense's time adverbial dominated it and an unsupervised probe of the label was at the mercy of the seed
(docs/data.md).

The label written for the classification probe is the **sentiment** (``0`` negative, ``1`` positive), as
for the paper's Yelp data; all four factors of every sentence are also written to ``SPLIT.factors.jsonl``.
Word choices within a class follow a Zipf-like law and a small share of content words is drawn from another
topic (or evaluative words from the other polarity), so a language model alone predicts much of a sentence
(it infers the factors from the words it has seen), while the factors still help on many words.

Generation is deterministic given the seed: each split has its own ``random.Random`` seeded with the
string ``"SEED:SPLIT"``, so the valid and test sentences do not change with the training size.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from textvae import DEFAULT_SEED

DEFAULT_SIZES = (20_000, 2_000, 2_000)
LABEL_FACTOR = "sentiment"
MIN_LEN, MAX_LEN = 6, 20
OFF_TOPIC = 0.08  # chance that a content word comes from another topic
FLIP_POLARITY = 0.06  # chance that an evaluative word has the other polarity

GRAMMAR = "grammar-v3"  # the version written to stats.json and factors.json
DESCRIPTION = (f"embedded latent-factor grammar corpus (textvae.corpora.synthetic {GRAMMAR}): factors topic (6), "
               "sentiment (2), tense (3), subject (6); label = sentiment (0 negative, 1 positive)")

TOPICS = ("food", "sports", "music", "travel", "technology", "garden")
SENTIMENTS = ("negative", "positive")
TENSES = ("past", "present", "future")
SUBJECTS = ("i", "you", "he", "she", "we", "they")

# Per topic: nouns (singular/plural), verbs (base/3rd singular/past), places, neutral adjectives.
_LEX = {
    "food": dict(
        nouns="soup/soups cake/cakes pizza/pizzas salad/salads sandwich/sandwiches pie/pies curry/curries "
        "cookie/cookies pasta/pastas burger/burgers dessert/desserts steak/steaks meal/meals dish/dishes "
        "bread/breads omelette/omelettes",
        verbs="cook/cooks/cooked bake/bakes/baked eat/eats/ate taste/tastes/tasted order/orders/ordered "
        "share/shares/shared try/tries/tried serve/serves/served buy/buys/bought prepare/prepares/prepared",
        prep="in",
        places="kitchen restaurant cafe bakery diner market",
        adjs="spicy fresh sweet warm homemade crispy",
    ),
    "sports": dict(
        nouns="game/games match/matches race/races ball/balls team/teams goal/goals season/seasons "
        "tournament/tournaments bike/bikes racket/rackets trophy/trophies player/players medal/medals "
        "point/points final/finals helmet/helmets",
        verbs="play/plays/played watch/watches/watched win/wins/won lose/loses/lost join/joins/joined "
        "practice/practices/practiced score/scores/scored coach/coaches/coached train/trains/trained "
        "miss/misses/missed",
        prep="at",
        places="stadium gym field court track arena",
        adjs="tough close long athletic rapid decisive",
    ),
    "music": dict(
        nouns="song/songs album/albums concert/concerts band/bands guitar/guitars piano/pianos "
        "melody/melodies drum/drums singer/singers record/records tune/tunes show/shows chorus/choruses "
        "lyric/lyrics violin/violins playlist/playlists",
        verbs="hear/hears/heard sing/sings/sang perform/performs/performed write/writes/wrote "
        "compose/composes/composed tune/tunes/tuned rehearse/rehearses/rehearsed download/downloads/downloaded "
        "stream/streams/streamed remix/remixes/remixed",
        prep="during",
        places="festival party session rehearsal wedding gala",
        adjs="loud quiet acoustic live classical catchy",
    ),
    "travel": dict(
        nouns="trip/trips flight/flights hotel/hotels ticket/tickets beach/beaches museum/museums map/maps "
        "suitcase/suitcases tour/tours island/islands room/rooms passport/passports cruise/cruises bus/buses "
        "view/views guide/guides",
        verbs="book/books/booked visit/visits/visited pack/packs/packed explore/explores/explored "
        "catch/catches/caught plan/plans/planned reserve/reserves/reserved cancel/cancels/canceled "
        "photograph/photographs/photographed extend/extends/extended",
        prep="to",
        places="airport city station village harbor coast",
        adjs="sunny foreign crowded remote scenic cheap",
    ),
    "technology": dict(
        nouns="phone/phones laptop/laptops app/apps computer/computers screen/screens battery/batteries "
        "program/programs website/websites camera/cameras update/updates keyboard/keyboards server/servers "
        "printer/printers tablet/tablets charger/chargers robot/robots",
        verbs="install/installs/installed fix/fixes/fixed charge/charges/charged test/tests/tested "
        "build/builds/built upgrade/upgrades/upgraded debug/debugs/debugged replace/replaces/replaced "
        "configure/configures/configured reboot/reboots/rebooted",
        prep="for",
        places="office lab shop school clinic library",
        adjs="new wireless digital smart portable electric",
    ),
    "garden": dict(
        nouns="flower/flowers tree/trees rose/roses seed/seeds plant/plants lawn/lawns vegetable/vegetables "
        "tomato/tomatoes hedge/hedges pot/pots bush/bushes leaf/leaves herb/herbs fence/fences tulip/tulips "
        "fruit/fruits",
        verbs="plant/plants/planted water/waters/watered grow/grows/grew trim/trims/trimmed pick/picks/picked "
        "dig/digs/dug prune/prunes/pruned harvest/harvests/harvested fertilize/fertilizes/fertilized "
        "mow/mows/mowed",
        prep="around",
        places="garden yard greenhouse park backyard farm",
        adjs="green wild tall blooming organic shady",
    ),
}

# sentiment → its words and punctuation; each entry: (positive, negative)
_SENT_WORDS = {
    "adjs": ("great wonderful amazing lovely excellent perfect fantastic delightful brilliant pleasant superb "
             "charming good nice",
             "terrible awful boring horrible dreadful poor disappointing bad dull miserable annoying lousy "
             "mediocre ugly"),
    "advs": ("happily gladly proudly eagerly cheerfully easily", "sadly reluctantly barely angrily nervously slowly"),
    "verbs": ("love/loves/loved enjoy/enjoys/enjoyed like/likes/liked",
              "hate/hates/hated regret/regrets/regretted dislike/dislikes/disliked"),
    "feelings": ("happy glad proud excited relaxed grateful", "sad angry tired bored upset annoyed"),
    "tags": ("highly recommended|loved it|what a joy|worth it", "never again|what a waste|so disappointing|avoid it"),
    "marks": ((".", "!"), (".", "!")),
    "mark_weights": ((0.55, 0.45), (0.85, 0.15)),
}
_SENT = {s: {k: v[i] for k, v in _SENT_WORDS.items()} for i, s in enumerate(("positive", "negative"))}

_TIME = {  # sentence-final time adverbials
    "past": ("yesterday", "last week", "last night", "last year", "earlier"),
    "present": ("today", "every day", "now", "these days", "every week"),
    "future": ("tomorrow", "next week", "soon", "tonight", "next year"),
}
_SUBJ = {  # realisations (pronoun first), possessive, third-person singular?, plural?
    "i": (("i",), "my", False, False),
    "you": (("you",), "your", False, True),
    "he": (("he", "my brother", "my father", "the man"), "his", True, False),
    "she": (("she", "my sister", "my mother", "the woman"), "her", True, False),
    "we": (("we", "my family and i"), "our", False, True),
    "they": (("they", "my friends", "my parents", "the kids"), "their", False, True),
}
# Chances of the optional parts of the template, by sentiment (negative, positive): adverb, a love/hate verb
# instead of a topic verb, prepositional phrase, second clause, time adverbial, closing tag; "clause_it" is
# the chance that the second clause is "it was ADJ" rather than "PRON felt FEELING", "intens" that its
# adjective gets an intensifier. The module docstring says why "tag" changed from grammar-v2.
FORM = {
    "adverb": (0.45, 0.12),
    "sentiment_verb": (0.15, 0.15),
    "pp": (0.65, 0.65),
    "clause": (0.75, 0.75),
    "clause_it": (0.5, 0.5),
    "intens": (0.2, 0.2),
    "time": (0.75, 0.75),
    "tag": (0.8, 0.8),  # grammar-v2: (0.3, 0.08)
}
_INTENS = ("very", "really", "quite", "so", "truly", "pretty", "rather")
_CONJ = {"positive": "and", "negative": "but"}


def _zipf(n: int, s: float = 0.9) -> list[float]:
    return [1.0 / (k + 1) ** s for k in range(n)]


def _split_forms(text: str) -> list[tuple[str, ...]]:
    return [tuple(w.split("/")) for w in text.split()]


class _Lexicon:
    def __init__(self) -> None:
        self.topic = {}
        for t, lex in _LEX.items():
            self.topic[t] = {
                "nouns": _split_forms(lex["nouns"]),
                "verbs": _split_forms(lex["verbs"]),
                "places": lex["places"].split(),
                "prep": lex["prep"],
                "adjs": lex["adjs"].split(),
            }
        self.sent = {}
        for s, lex in _SENT.items():
            self.sent[s] = {
                "adjs": lex["adjs"].split(),
                "advs": lex["advs"].split(),
                "verbs": _split_forms(lex["verbs"]),
                "feelings": lex["feelings"].split(),
                "tags": [t.split() for t in lex["tags"].split("|")],
                "marks": lex["marks"],
                "mark_weights": lex["mark_weights"],
            }


_LEXICON = _Lexicon()


@dataclass
class Example:
    tokens: list[str]
    label: int
    factors: dict


class _Gen:
    def __init__(self, rng: random.Random):
        self.rng = rng

    def pick(self, items, s: float = 0.9):
        return self.rng.choices(items, weights=_zipf(len(items), s))[0]

    def flip(self, p: float) -> bool:
        return self.rng.random() < p

    def topic_lex(self, topic: str) -> dict:
        if self.flip(OFF_TOPIC):
            topic = self.rng.choice([t for t in TOPICS if t != topic])
        return _LEXICON.topic[topic]

    def sent_lex(self, sentiment: str) -> dict:
        if self.flip(FLIP_POLARITY):
            sentiment = SENTIMENTS[1 - SENTIMENTS.index(sentiment)]
        return _LEXICON.sent[sentiment]

    def verb(self, forms: tuple[str, ...], tense: str, third_sg: bool) -> list[str]:
        base, s3, past = forms
        if tense == "past":
            return [past]
        if tense == "future":
            return ["will", base]
        return [s3 if third_sg else base]

    def copula(self, tense: str, subj: str | None) -> list[str]:
        """'be' for 'it' (subj None) or a subject factor."""
        plural = subj in ("you", "we", "they")
        if tense == "past":
            return ["were" if plural else "was"]
        if tense == "future":
            return ["will", "be"]
        return ["am" if subj == "i" else "are" if plural else "is"]

    def determiner(self, possessive: str) -> list[str]:
        return [possessive] if self.flip(0.35) else ["the"]

    def noun_phrase(self, topic: str, sentiment: str, possessive: str, head: str | None = None) -> list[str]:
        lex = self.topic_lex(topic)
        plural = False
        if head is None:
            forms = self.pick(lex["nouns"], 1.1)
            plural = self.flip(0.2)
            head = forms[1] if plural else forms[0]
        adj: list[str] = []
        r = self.rng.random()
        if r < 0.45:
            adj = [self.pick(self.sent_lex(sentiment)["adjs"], 1.1)]
        elif r < 0.6:
            adj = [self.pick(self.topic_lex(topic)["adjs"], 1.1)]
        return self.determiner(possessive) + adj + [head]

    def sentence(self, topic: str, sentiment: str, tense: str, subject: str) -> list[str]:
        """SUBJ [ADV] VERB NP [PREP NP] [CONJ CLAUSE] [TIME] [, TAG] MARK — the factors choose the words
        and, through the probabilities of the optional parts, much of the form."""
        forms, possessive, third_sg, _plural = _SUBJ[subject]
        neg = sentiment == "negative"
        form = {part: p[0] if neg else p[1] for part, p in FORM.items()}
        words: list[str] = []
        subj_words = forms[0] if len(forms) == 1 or self.flip(0.7) else self.pick(forms[1:], 1.0)
        words += subj_words.split()
        if self.flip(form["adverb"]):
            words.append(self.pick(self.sent_lex(sentiment)["advs"], 1.1))
        if self.flip(form["sentiment_verb"]):
            verb_forms = self.pick(self.sent_lex(sentiment)["verbs"], 1.1)
        else:
            verb_forms = self.pick(self.topic_lex(topic)["verbs"], 1.1)
        words += self.verb(verb_forms, tense, third_sg)
        words += self.noun_phrase(topic, sentiment, possessive)
        if self.flip(form["pp"]):
            lex = self.topic_lex(topic)
            words += [lex["prep"]] + self.noun_phrase(topic, sentiment, possessive, head=self.pick(lex["places"], 1.1))
        if self.flip(form["clause"]):
            words.append(_CONJ[sentiment] if not self.flip(FLIP_POLARITY) else _CONJ["positive" if neg else "negative"])
            sl = self.sent_lex(sentiment)
            if self.flip(form["clause_it"]):
                words += ["it"] + self.copula(tense, None)
                tail = self.pick(sl["adjs"], 1.1)
            else:
                pron = _SUBJ[subject][0][0]
                feel = {"past": ["felt"], "future": ["will", "feel"]}.get(
                    tense, ["feels" if third_sg else "feel"])
                words += [pron] + feel
                tail = self.pick(sl["feelings"], 1.1)
            if self.flip(form["intens"]):
                words.append(self.pick(_INTENS, 1.1))
            words.append(tail)
        if self.flip(form["time"]):
            words += self.pick(_TIME[tense], 1.1).split()
        sl = self.sent_lex(sentiment)
        if self.flip(form["tag"]):
            words += [","] + self.pick(sl["tags"], 1.0)
        words.append(self.rng.choices(sl["marks"], weights=sl["mark_weights"])[0])
        return words

    def example(self) -> Example:
        rng = self.rng
        while True:
            f = {"topic": rng.choice(TOPICS), "sentiment": rng.choice(SENTIMENTS), "tense": rng.choice(TENSES),
                 "subject": rng.choice(SUBJECTS)}
            toks = self.sentence(f["topic"], f["sentiment"], f["tense"], f["subject"])
            if MIN_LEN <= len(toks) <= MAX_LEN:
                return Example(toks, SENTIMENTS.index(f["sentiment"]), f)


def generate(seed: int = DEFAULT_SEED, sizes: dict[str, int] | None = None) -> dict[str, list[Example]]:
    """``{split: [Example]}``; deterministic given ``seed`` (and independent across splits)."""
    sizes = sizes or dict(zip(("train", "valid", "test"), DEFAULT_SIZES))
    out = {}
    for split, n in sizes.items():
        gen = _Gen(random.Random(f"{seed}:{split}"))
        out[split] = [gen.example() for _ in range(int(n))]
    return out


def describe() -> dict:
    """The factors, their values and the label mapping (written to ``factors.json``)."""
    vocab = set()
    for lex in _LEXICON.topic.values():
        for forms in lex["nouns"] + lex["verbs"]:
            vocab.update(forms)
        vocab.update(lex["places"] + lex["adjs"])
    return {
        "generator": f"textvae.corpora.synthetic {GRAMMAR}",
        "label_factor": LABEL_FACTOR,
        "labels": {str(i): v for i, v in enumerate(SENTIMENTS)},
        "factors": {"topic": list(TOPICS), "sentiment": list(SENTIMENTS), "tense": list(TENSES),
                    "subject": list(SUBJECTS)},
        "off_topic_rate": OFF_TOPIC,
        "flip_polarity_rate": FLIP_POLARITY,
        "length_range": [MIN_LEN, MAX_LEN],
        "content_word_types": len(vocab),
    }
