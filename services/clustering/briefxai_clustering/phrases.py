"""The naming tokeniser: chat text -> words and candidate phrases of 1-3 words.

Written here because no installed tokenizer fits: scikit-learn's ``token_pattern`` turns "doesn't" into
"doesn" and keeps "15", "2x" and "DNS_PROBE"; the embedding model's WordPiece tokenizer splits words
into sub-words. One regular expression walks the text:

- Dropped, and breaking a phrase where they stood: fenced and inline code, URLs, e-mail addresses,
  placeholders (``[EMAIL]``, ``<NAME>``, ``{user}``), file paths, code-ish identifiers (``snake_case``,
  ``os.path``, ``call()``), and every token holding a digit (``15``, ``2x``, ``$409.95``, hex ids).
- Punctuation breaks a phrase too; ``.``, ``!``, ``?`` and line breaks also end a sentence (so that a
  word's casing can be read off its non-initial uses: "Docker", "TV").
- Words are letters with inner apostrophes and hyphens ("doesn't", "tp-link"), lower-cased, curly
  apostrophes made straight. Contractions of stop words ("doesn't", "I'm", "that's") are stop words;
  a possessive "'s" is cut ("mom's" -> "mom"); a French elision is cut ("l'application" -> "application").
- Stop words: English (scikit-learn's list without its content words such as "bill" or "system"), chat
  fillers ("thanks", "yeah", "lol", "gonna", laughter such as "hahaha"), and the function words of
  Portuguese, Spanish, French, German and Italian, so that a cluster of non-English chats is not named
  "para / uma / que" (the embedding model is English-only; its names stay poor, not misleading).

A phrase is 1-3 consecutive words of one unbroken run that neither starts nor ends with a stop word
and repeats no word: "password reset", "pets could talk".
"""

from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

MAX_PHRASE_WORDS = 3
MAX_WORD_CHARS = 24


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Words of scikit-learn's list that name things in support and chat text.
_CONTENT_WORDS = _word_set(
    "bill bottom call computer cry describe detail empty fill find fire front full interest mill move "
    "name part serious show side system thick thin top amount"
)
_ENGLISH_EXTRA = _word_set(
    """
    also anybody anymore cause did does doing dont else gets getting gives goes going gone gotten im ive
    let lets ones ought shall thats theres theyre thing things tho though thru via whats wont youre
    yours ya yall
    """
)
CHAT_FILLERS = _word_set(
    """
    hi hello hey hiya howdy yo bye goodbye cheers dear sir madam thanks thank thx ty tysm pls plz please
    welcome sorry yes yeah yea yep yup ya nope nah ok okay okey alright fine sure right true well cool
    nice great good awesome amazing wow oh ooh ah aw aww um umm uh uhm hmm huh eh lol lmao rofl omg omfg
    btw idk imo imho tbh fyi haha hehe like likes liked just really actually basically literally
    honestly seriously totally definitely probably maybe kinda sorta kind sort pretty quite lot lots
    bit little stuff know knew think thought guess mean means want wants wanted wanna gonna gotta
    dunno need needs needed got get say says said tell told feel feels felt make makes made use used
    using try tried trying take taking took went come came look looks looking thing things way ways
    sounds sound hope agree glad interesting question questions answer fun funny super help wondering
    """
)
# Contractions typed without the apostrophe ("dont", "im"), leaving out real words ("ill", "well", "its").
_BARE_CONTRACTIONS = _word_set(
    """
    arent cant couldnt didnt doesnt dont hadnt hasnt havent hes hows id im isnt ive lets shes thats
    theres theyd theyll theyre theyve wasnt werent whats wheres whos wont wouldnt youd youll youre
    youve shouldnt yall
    """
)
# Articles, possessive and object pronouns and forms of "be": left out of phrases without breaking
# them, so that "reset my password" gives "reset password", "account is locked" "account locked"
# (headline style).
SKIPPED = _word_set("a an the my your his her its our their me him us them it is are was were be been am")
_UNITS = _word_set("kb mb gb tb ghz mhz ms sec secs min mins hr hrs km kg lb lbs mph usd eur gbp")
_PORTUGUESE = _word_set(
    """
    a ao aos as até com como da das de do dos e é ela ele eles em entre era essa esse esta está estou
    estão eu foi há isso isto já lhe mais mas me meu minha muito na nas não nem no nos o os ou para
    pela pelo por porque pra qual quando que se sem ser seu sua são também tem tenho ter um uma você
    vocês olá oi obrigado obrigada bom boa dia tarde noite preciso quero posso pode fazer meus minhas
    seus suas num numa consigo ainda depois agora aqui sobre
    """
)
_SPANISH = _word_set(
    """
    a al algo como con cual cuando de del donde el él ella ellos en entre era es esa ese eso esta
    está estoy este esto estos fue ha hay hola gracias la las le les lo los me mi mis muy más nada ni
    no nos o para pero por porque que qué se si sí sin sobre su sus también te tengo ti tu tú un una
    uno unos y ya yo usted ustedes puedo puede quiero necesito buenos buenas días hacer mucho ahora
    aquí todavía después
    """
)
_FRENCH = _word_set(
    """
    à au aux avec avez ce ces cette c'est comment dans de des du elle elles en est et être fait faire
    il ils je j'ai la le les leur lui ma mais me mes moi mon ne nous on ou où par pas peut peux plus
    pour pourquoi qu que quel quelle qui sa se ses si son sont suis sur ta te tes toi ton tu un une
    vos votre vous y bonjour bonsoir merci salut oui non très bien ai avoir aussi encore après
    """
)
_GERMAN = _word_set(
    """
    aber als am an auch auf aus bei bin bitte da danke das dass dem den der des dich dir du ein eine
    einem einen einer er es für hallo habe haben hast hat ich ihr im in ist ja kann kein keine können
    mein meine meinem meinen meiner mich mir mit nach nein nicht noch nur oder schon sich sie sind so
    über um und uns von vor war was weil wie wir wird wo zu zum zur guten tag morgen möchte brauche moin servus
    """
)
_ITALIAN = _word_set(
    """
    a ai al alla anche che ci come con da del della di e è gli ha ho il in io la le lo ma mi mio mia
    nel non per più perché questo questa se si sono su ti tu un una uno ciao grazie buongiorno posso
    voglio vorrei
    """
)
# Function words elsewhere that are content words in English: stop words only in a text that looks
# non-English (more of the other languages' function words than English ones).
AMBIGUOUS = _word_set("bin die fast gift hat kind man pain son tag art fin")
OTHER_LANGUAGES = (_PORTUGUESE | _SPANISH | _FRENCH | _GERMAN | _ITALIAN) - AMBIGUOUS - ENGLISH_STOP_WORDS
_ENGLISH_FUNCTION = frozenset(ENGLISH_STOP_WORDS)
STOP_WORDS = frozenset(
    (ENGLISH_STOP_WORDS - _CONTENT_WORDS)
    | _ENGLISH_EXTRA
    | _BARE_CONTRACTIONS
    | CHAT_FILLERS
    | _UNITS
    | SKIPPED
    | OTHER_LANGUAGES
)

_LAUGHTER_OR_FILLER = re.compile(
    r"(?:a?(?:ha|he|hi|ja|je|ka|ks|yo)+h?|k+|l+o+l+[sz]?|lm+f?a+o+|x+d+|h+m+|u+m+|u+h+|o+h+|a+h+|e+h+|w+o+w+|"
    r"y+a+y+|o+k+|o+k+a+y+|y+e+a+h+|y+e+s+|y+e+p+|n+o+p+e+|m+h+m+|a+w+|s+o+|z+)"
)
_CONTRACTION_SUFFIXES = frozenset({"s", "m", "re", "ve", "ll", "d"})
_ELISIONS = frozenset({"l", "d", "j", "c", "qu", "n", "s", "m", "t"})
_SENTENCE_END = frozenset(".!?\n")
_CHUNK = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`|\n|[^\s`]+", re.DOTALL)
_SUFFIX = re.compile(r"(?:ing|ed|es|e|s)$")

_TOKEN = re.compile(
    r"""
    (?P<fence>```.*?(?:```|\Z))
    |(?P<url>(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)\S+)
    |(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)
    |(?P<placeholder>\[[^\]\s]{1,40}\]|<[^>\s]{1,40}>|\{\{?[^}\s]{1,40}\}?\})
    |(?P<inline>`[^`\n]*`)
    |(?P<path>(?:\b[a-z]:\\|~?/)[\w.\-/\\]+|[\w.-]+(?:[\\/][\w.-]+){2,})
    |(?P<code>\w*_\w*|[^\W\d_]\w*(?:(?:\.|::|->)\w+)+(?:\(\))?|\w+\()
    |(?P<number>[$€£#]?\w*\d\w*(?:[.,:/×x-]\w*\d\w*)*%?)
    |(?P<word>[^\W\d_]+(?:['’][^\W\d_]+)*(?:-[^\W\d_]+)*)
    |(?P<brk>[^\w\s'’]|\n)
    """,
    re.VERBOSE | re.DOTALL | re.IGNORECASE,
)


class Run(NamedTuple):
    """One unbroken run of words: their keys (normal forms, lower case) and which are stop words."""

    keys: list[str]
    stops: list[bool]


class _Word(NamedTuple):
    key: str
    surface: str
    stop: bool
    skipped: bool
    language: int  # 1: another language's function word, 2: an English one, else 0


BREAK = 1  # ends a run
SENTENCE = 2  # ends a run and a sentence
_Action = _Word | int
_CHUNKS: dict[str, tuple[_Action, ...]] = {}  # whitespace-free chunk -> what it holds
_CHUNKS_LIMIT = 200_000  # distinct chunks remembered (the cache is cleared when full)


def normalize_word(surface: str) -> tuple[str, bool]:
    """The word's key and whether it is a stop word (contractions, possessives and elisions resolved)."""
    key = surface.lower().replace("’", "'")
    if "'" in key:
        base, _, suffix = key.partition("'")
        if base in _ELISIONS and suffix:
            key = suffix.split("'")[0]
        elif suffix == "t" or base in STOP_WORDS or key in STOP_WORDS:
            return key, True
        elif suffix in _CONTRACTION_SUFFIXES:
            if suffix != "s":
                return key, True
            key = base
    if len(key) < 2 or len(key) > MAX_WORD_CHARS or key in STOP_WORDS:
        return key, True
    return key, _LAUGHTER_OR_FILLER.fullmatch(key) is not None


def _make_word(surface: str) -> _Word:
    key, stop = normalize_word(surface)
    language = 1 if key in OTHER_LANGUAGES else 2 if key in _ENGLISH_FUNCTION else 0
    return _Word(key, surface.replace("’", "'"), stop, key in SKIPPED, language)


def _chunk_actions(chunk: str) -> tuple[_Action, ...]:
    """What a whitespace-free chunk holds: words and breaks, in order (cached)."""
    actions = _CHUNKS.get(chunk)
    if actions is not None:
        return actions
    found: list[_Action] = []
    for token in _TOKEN.finditer(chunk):
        kind = token.lastgroup
        if kind == "word":
            found.append(_make_word(token.group()))
        elif kind == "brk" and token.group() in _SENTENCE_END:
            found.append(SENTENCE)
        elif not found or found[-1] != SENTENCE:
            found.append(BREAK)
    if len(_CHUNKS) >= _CHUNKS_LIMIT:
        _CHUNKS.clear()
    actions = _CHUNKS[chunk] = tuple(found)
    return actions


def segments(text: str, casing: Casing | None = None) -> list[Run]:
    """Runs of words not broken by punctuation or by a dropped token (code, number, URL, ...).

    Skipped words (articles, some pronouns) are left out without breaking a run. In a text with more
    Portuguese/Spanish/French/German/Italian function words than English ones, the ``AMBIGUOUS`` words
    ("die", "son") are stop words too. ``casing`` learns how the text writes its words mid-sentence.
    """
    runs: list[Run] = []
    keys: list[str] = []
    stops: list[bool] = []
    initial = True
    languages = [0, 0, 0]
    cache = _CHUNKS
    for chunk in _CHUNK.findall(text):
        actions = cache.get(chunk)
        if actions is None:
            if chunk[0] in "`\n":
                actions = (SENTENCE,) if chunk == "\n" else (BREAK,)
            else:
                actions = _chunk_actions(chunk)
        for action in actions:
            if isinstance(action, int):
                if keys:
                    runs.append(Run(keys, stops))
                    keys, stops = [], []
                initial = initial or action == SENTENCE
                continue
            languages[action.language] += 1
            if action.skipped:
                initial = False
                continue
            keys.append(action.key)
            stops.append(action.stop)
            if casing is not None and not initial and action.surface != action.key and not action.stop:
                casing.observe(action.key, action.surface)
            initial = False
    if keys:
        runs.append(Run(keys, stops))
    if languages[1] > languages[2]:
        return [
            Run(r.keys, [s or k in AMBIGUOUS for k, s in zip(r.keys, r.stops, strict=True)]) for r in runs
        ]
    return runs


def stem(word: str) -> str:
    """A crude stem, enough to tell that "charge", "charged" and "charges" are one word."""
    stemmed = _SUFFIX.sub("", word)
    return stemmed if len(stemmed) >= 3 else word


def words(text: str) -> list[str]:
    """The text's content words (no stop words), in order."""
    return [key for run in segments(text) for key, stop in zip(run.keys, run.stops, strict=True) if not stop]


def run_phrases(run: Run, max_words: int = MAX_PHRASE_WORDS) -> list[str]:
    """Phrases of one run: 1..``max_words`` consecutive words, no stop word at either end, no repeats."""
    keys, stops = run.keys, run.stops
    found: list[str] = []
    for start in range(len(keys)):
        if stops[start]:
            continue
        found.append(keys[start])
        for end in range(start + 1, min(start + max_words, len(keys))):
            if not stops[end]:
                span = keys[start : end + 1]
                if len(set(span)) == len(span):
                    found.append(" ".join(span))
    return found


def phrases(text: str, max_words: int = MAX_PHRASE_WORDS) -> list[str]:
    """Every candidate phrase of ``text`` (with repeats), in order."""
    return [phrase for run in segments(text) for phrase in run_phrases(run, max_words)]


class Casing:
    """How words are usually written in the middle of a sentence: "Docker", "TV", "iPhone", else lower."""

    def __init__(self) -> None:
        self._written: dict[str, Counter[str]] = {}

    def observe(self, key: str, surface: str) -> None:
        """A non-initial use of the content word ``key`` written otherwise than ``key``: ``surface``."""
        if surface.lower() == key:
            self._written.setdefault(key, Counter())[surface] += 1

    def word(self, key: str, uses: float) -> str:
        """The form written in more than half of the word's ``uses``, else ``key``."""
        forms = self._written.get(key)
        if not forms:
            return key
        surface, count = min(forms.items(), key=lambda form: (-form[1], form[0]))
        return surface if count * 2 > uses else key
