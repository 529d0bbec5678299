"""Make ``sample-data/yoda_sentences.jsonl``: English sentences and Yoda-speak.

The book fine-tunes on ``dvgodoy/yoda_sentences`` (columns ``sentence``,
``translation``, ``translation_extra``). ftui ships a dataset of the same shape so
the workbench runs offline, but the text is our own: sentences are drawn from
word lists through a handful of sentence shapes, and each shape has a fixed Yoda
reordering (complement or verb phrase first, then subject and auxiliary;
eight shapes in all, see ``make_pair``):

    You must learn patience.        -> Patience, you must learn.
    The Force is strong in you.     -> Strong in you, the Force is.
    I have seen many battles.       -> Seen many battles, I have.
    There is great danger here.     -> Great danger here, there is.

``translation_extra`` is the translation followed by an interjection
("Yes, hrrmmm.", "Hmm.", ...). Everything comes from one seeded
``random.Random``, so two runs write byte-identical files.

Run from the repository root:  .venv/bin/python tools/make_yoda.py
"""

import json
import random
from pathlib import Path

SEED = 1977
COUNT = 700
OUT = Path(__file__).resolve().parent.parent / "sample-data" / "yoda_sentences.jsonl"

# (text, person, plural). Text is as it reads mid-sentence; only proper nouns
# and "I" carry capitals.
SUBJECTS = [
    ("I", 1, False), ("you", 2, False), ("we", 1, True), ("they", 3, True),
    ("he", 3, False), ("she", 3, False), ("the young Jedi", 3, False),
    ("the old master", 3, False), ("the droid", 3, False), ("the pilots", 3, True),
    ("the senator", 3, False), ("my apprentice", 3, False), ("your friends", 3, True),
    ("the soldiers", 3, True), ("Luke", 3, False), ("the captain", 3, False),
    ("the smugglers", 3, True), ("the council", 3, False), ("the children", 3, True),
    ("the farmer", 3, False), ("the princess", 3, False), ("the Wookiee", 3, False),
]

# base, past, past participle, -ing, objects that make sense with the verb.
VERBS = [
    ("learn", "learned", "learned", "learning",
     ["patience", "the ways of the Force", "many things", "this lesson", "the old songs"]),
    ("trust", "trusted", "trusted", "trusting",
     ["your feelings", "the Force", "the old pilot", "the council", "the map"]),
    ("face", "faced", "faced", "facing",
     ["your fear", "the dark side", "the storm", "many dangers", "the truth"]),
    ("find", "found", "found", "finding",
     ["the hidden temple", "the lost map", "a new path", "the answer", "peace"]),
    ("repair", "repaired", "repaired", "repairing",
     ["the old ship", "the broken droid", "the engine", "the radio"]),
    ("read", "read", "read", "reading",
     ["the ancient texts", "the star charts", "the message", "the old books"]),
    ("protect", "protected", "protected", "protecting",
     ["the village", "the younglings", "the weak", "the archives"]),
    ("seek", "sought", "sought", "seeking",
     ["wisdom", "the truth", "balance", "knowledge", "a quiet place"]),
    ("build", "built", "built", "building",
     ["a new lightsaber", "a small house", "the bridge", "a fire"]),
    ("see", "saw", "seen", "seeing",
     ["the future", "many battles", "the danger", "the twin suns"]),
    ("hear", "heard", "heard", "hearing",
     ["the message", "the call", "a strange noise", "the old stories"]),
    ("carry", "carried", "carried", "carrying",
     ["the heavy crate", "the wounded pilot", "the supplies", "the water"]),
    ("feel", "felt", "felt", "feeling",
     ["the Force", "great fear", "the disturbance", "the cold wind"]),
    ("forget", "forgot", "forgotten", "forgetting",
     ["the old ways", "the training", "the way home", "the lesson"]),
    ("guard", "guarded", "guarded", "guarding",
     ["the gate", "the secret", "the prisoners", "the north tower"]),
    ("cook", "cooked", "cooked", "cooking",
     ["a strange stew", "dinner", "root leaf soup", "the fish"]),
    ("clean", "cleaned", "cleaned", "cleaning",
     ["the ship", "the training room", "the weapons", "the kitchen"]),
    ("teach", "taught", "taught", "teaching",
     ["the younglings", "the new students", "the old lessons"]),
    ("follow", "followed", "followed", "following",
     ["the path", "the river", "the old map", "the stars"]),
    ("open", "opened", "opened", "opening",
     ["the door", "the box", "the gate", "the letter"]),
    ("lose", "lost", "lost", "losing",
     ["the map", "the way", "hope", "the key"]),
]

PLACES = [
    "in the swamp", "on Dagobah", "in the temple", "at the old base", "in the forest",
    "on the ship", "near the river", "in the desert", "on the moon", "in the city",
    "under the stars", "in the cave", "at the market", "in the mountains",
]
TIMES = [
    "today", "tomorrow", "every morning", "at night", "before the storm",
    "after the battle", "soon", "this evening", "in the spring", "at dawn",
]
COMPLEMENTS = [
    "strong with the Force", "ready for the trial", "afraid of the dark",
    "tired after the long journey", "angry with the council", "lost in the forest",
    "hungry after the training", "brave in battle", "quiet in the temple",
    "clouded by fear", "far from home", "full of anger", "wise beyond measure",
    "too reckless", "very old", "patient with the younglings", "not ready",
    "certain of the path", "safe on the ship", "happy in the swamp",
]
# Complements that fit one subject only (the book's favourite line among them).
SPECIAL = [("the Force", "strong in you"), ("the Force", "with us"),
           ("the dark side", "clouded and strong"), ("the future", "always in motion")]
THINGS = [  # (thing, plural)
    ("great danger", False), ("much fear", False), ("a hidden door", False),
    ("an old droid", False), ("no time", False), ("a strange light", False),
    ("many questions", True), ("little hope", False), ("two sleeping guards", True),
    ("much to learn", False), ("old secrets", True),
]
MODALS = ["must", "should", "can", "cannot", "will", "may"]
INTERJECTIONS = [
    "Yes, hrrmmm.", "Hmm.", "Hrmm.", "Yesss.", "Herh herh herh.", "Hmmmmmm.",
    "Yes, hmm.", "Mmm, yes.",
]


def be(person, plural):
    return "am" if (person, plural) == (1, False) else "is" if person == 3 and not plural else "are"


def have(person, plural):
    return "has" if person == 3 and not plural else "have"


def does(person, plural):
    return "does" if person == 3 and not plural else "do"


def cap(text):
    return text[0].upper() + text[1:]


def make_pair(rng):
    """One (English, Yoda) pair from a randomly chosen sentence shape."""
    shape = rng.randrange(9)
    s, person, plural = rng.choice(SUBJECTS)
    base, past, pp, ing, objects = rng.choice(VERBS)
    obj = rng.choice(objects)
    adverbial = rng.choice(PLACES + TIMES)
    if shape == 0:  # modal: the object goes first
        m = rng.choice(MODALS)
        return f"{s} {m} {base} {obj}.", f"{obj}, {s} {m} {base}."
    if shape == 1:  # modal with an adverbial: the whole verb phrase goes first
        m = rng.choice(MODALS)
        if rng.randrange(3) == 0:
            adverbial = f"{rng.choice(PLACES)} {rng.choice(TIMES)}"
        return f"{s} {m} {base} {obj} {adverbial}.", f"{base} {obj} {adverbial}, {s} {m}."
    if shape == 2:  # copula: the complement goes first
        if rng.randrange(5) == 0:
            s, c = rng.choice(SPECIAL)
            person, plural = 3, False
        else:
            c = rng.choice(COMPLEMENTS)
        b = be(person, plural)
        return f"{s} {b} {c}.", f"{c}, {s} {b}."
    if shape == 3:  # present perfect: participle phrase first
        h = have(person, plural)
        return f"{s} {h} {pp} {obj}.", f"{pp} {obj}, {s} {h}."
    if shape == 4:  # simple past with a place: the place goes first
        place = rng.choice(PLACES)
        return f"{s} {past} {obj} {place}.", f"{place}, {s} {past} {obj}."
    if shape == 5:  # progressive: the -ing phrase goes first
        b = be(person, plural)
        return f"{s} {b} {ing} {obj} {adverbial}.", f"{ing} {obj} {adverbial}, {s} {b}."
    if shape == 6:  # existential: the thing and where it is go first
        thing, many = rng.choice(THINGS)
        place = rng.choice(PLACES)
        b = "are" if many else "is"
        return f"there {b} {thing} {place}.", f"{thing} {place}, there {b}."
    if shape == 7:  # a "when" clause and a modal main clause, both reordered
        s2, p2, n2 = rng.choice(SUBJECTS)
        c = rng.choice(COMPLEMENTS)
        b = be(p2, n2)
        m = rng.choice(["must", "should", "will"])
        return (f"when {s2} {b} {c}, {s} {m} {base} {obj} {adverbial}.",
                f"when {c} {s2} {b}, {base} {obj} {adverbial}, {s} {m}.")
    # shape 8, imperative or question: "..., you must." / "..., do you?"
    if rng.randrange(2):
        end = rng.choice([".", "!"])
        return f"{base} {obj} {adverbial}{end}", f"{base} {obj} {adverbial}, you must."
    d = does(person, plural)
    return f"{d} {s} {base} {obj}?", f"{base} {obj}, {d} {s}?"


def main():
    rng = random.Random(SEED)
    seen, rows = set(), []
    while len(rows) < COUNT:
        sentence, translation = (cap(t) for t in make_pair(rng))
        if sentence in seen or not 5 <= len(sentence.split()) <= 20:
            continue
        seen.add(sentence)
        extra = f"{translation} {rng.choice(INTERJECTIONS)}"
        rows.append({"sentence": sentence, "translation": translation,
                     "translation_extra": extra})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
