"""Keyword lexicons for the heuristic ``task`` and ``concerning`` facets.

Both look only at what the *user* wrote (the first ``max_chars`` characters, lower-cased). Patterns are
regular expressions matched on word boundaries; they are mostly English with a few common Spanish,
French, German and Portuguese phrases, so other languages mostly end in ``other`` / 1.

``task``: every category in :data:`TASK_LEXICON` scores ``weight × number of matches``, matches in the
first user message counting double (a code fence or a traceback adds 3 to ``coding``). The best score
wins; a tie goes to the category scoring more in the first message, then to the one listed first in
``TASK_CHOICES`` (coding, troubleshooting, account_billing, product_inquiry, creative, writing,
analysis, advice, information_lookup); no match at all gives ``other``. Generic question openers
("what is", "how does") weigh 0.5 and advice cues 0.75 so that a concrete topic beats them.

``concerning``: :data:`CONCERNING_LEXICON` lists phrases in tiers 2–5 (5: child sexual abuse, mass-casualty
weapons, stated intent to end one's life; 4: violence against a person, self-harm, malware, hard drugs
manufacture, trafficking; 3: hacking, fraud, weapons, harassment, evasion of security; 2: mild signals
such as drugs, scams, gambling, hate). The score is the highest tier matched, plus one (up to 5) when
three or more distinct phrases matched; no match is 1. The reason names the matched phrases and their
categories. This is a triage signal for review queues, not a classifier: fiction ("a murder mystery")
and security research score like the real thing, and paraphrases are missed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .definitions import TASK_CHOICES

#: Matches in the user's first message count this many times (the opening states the request).
FIRST_MESSAGE_WEIGHT = 2.0

# category -> (weight, patterns)
TASK_LEXICON: dict[str, tuple[float, tuple[str, ...]]] = {
    "coding": (
        1.0,
        (
            r"python", r"javascript", r"typescript", r"java", r"c\+\+", r"c#", r"rust", r"golang", r"kotlin",
            r"swift", r"php", r"ruby", r"sql", r"regex", r"bash", r"shell script", r"code", r"coding",
            r"function", r"functions", r"compile", r"compiler", r"traceback", r"stack trace", r"exception",
            r"api", r"endpoint", r"json", r"html", r"css", r"react", r"django", r"flask", r"node(?:\.js)?",
            r"git", r"github", r"docker", r"kubernetes", r"algorithm", r"refactor", r"debug", r"debugging",
            r"syntax", r"variable", r"loop", r"array", r"unit tests?", r"script", r"program", r"programming",
            r"library", r"framework", r"null pointer", r"segfault", r"pandas", r"numpy",
        ),
    ),
    "troubleshooting": (
        1.0,
        (
            r"not working", r"doesn'?t work", r"does not work", r"won'?t (?:start|turn on|load|open|connect)",
            r"can'?t connect", r"cannot connect", r"error", r"errors", r"crash(?:es|ed|ing)?", r"broken",
            r"stuck", r"freez(?:e|es|ing)", r"frozen", r"fail(?:s|ed|ing)?", r"issue", r"problem",
            r"troubleshoot(?:ing)?", r"reboot", r"restart", r"wi-?fi", r"internet", r"bluetooth", r"printer",
            r"router", r"install(?:ation|ing)?", r"update", r"slow", r"keeps? (?:crashing|disconnecting)",
            r"no funciona", r"ne fonctionne pas", r"marche pas", r"funktioniert nicht", r"não funciona",
        ),
    ),
    "account_billing": (
        1.0,
        (
            r"password", r"log ?in", r"sign ?in", r"account", r"locked out", r"2fa", r"two-factor",
            r"verification code", r"subscription", r"subscribe", r"unsubscribe", r"cancel my", r"invoice",
            r"bill", r"billing", r"billed", r"charged?", r"double charged", r"refund", r"payment", r"paid",
            r"receipt", r"renewal", r"membership", r"contraseña", r"mot de passe", r"passwort", r"factura",
            r"facture", r"rechnung", r"abonnement", r"suscripción", r"reembolso", r"remboursement", r"cuenta",
            r"iniciar sesión", r"compte", r"konto", r"conta", r"senha",
        ),
    ),
    "product_inquiry": (
        1.0,
        (
            r"price", r"prices", r"pricing", r"how much", r"cost", r"costs", r"plans?", r"discount", r"coupon",
            r"promo(?: code)?", r"buy", r"purchase", r"shipping", r"delivery", r"in stock", r"available",
            r"availability", r"features?", r"trial", r"demo", r"quote", r"warranty", r"enterprise",
            r"do you (?:sell|offer|have|ship)", r"precio", r"prix", r"preis", r"disponible", r"disponibile",
            r"cuesta", r"costa", r"coûte", r"kostet", r"envío", r"spedizione", r"livraison", r"versand",
        ),
    ),
    "writing": (
        1.0,
        (
            r"write", r"rewrite", r"draft", r"edit", r"proofread", r"essay", r"email", r"e-mail", r"letter",
            r"cover letter", r"resume", r"cv", r"paragraph", r"summari[sz]e", r"summary", r"translate",
            r"translation", r"grammar", r"tone", r"blog post", r"article", r"caption", r"outline",
            r"paraphrase", r"spelling", r"reword", r"linkedin post", r"speech",
        ),
    ),
    "analysis": (
        1.0,
        (
            r"analy[sz]e", r"analysis", r"data", r"dataset", r"spreadsheet", r"excel", r"csv", r"chart",
            r"graph", r"statistics?", r"statistical", r"regression", r"correlation", r"average", r"median",
            r"trend", r"trends", r"calculate", r"calculation", r"percentage", r"forecast", r"metrics",
            r"kpis?", r"survey results", r"compare the", r"pros and cons",
        ),
    ),
    "creative": (
        1.0,
        (
            r"story", r"short story", r"poem", r"poetry", r"lyrics", r"song", r"haiku", r"fiction", r"novel",
            r"characters?", r"plot", r"role-?play", r"joke", r"jokes", r"riddle", r"fantasy", r"screenplay",
            r"slogan", r"tagline", r"fairy tale", r"bedtime story", r"imagine", r"rap", r"limerick",
        ),
    ),
    "advice": (
        0.75,
        (
            r"should i", r"advice", r"advise", r"recommend", r"recommendation", r"suggest", r"suggestions?",
            r"help me decide", r"career", r"job interview", r"interview", r"relationship", r"boyfriend",
            r"girlfriend", r"wife", r"husband", r"health", r"diet", r"workout", r"exercise", r"anxiety",
            r"stress", r"doctor", r"symptoms?", r"invest", r"investing", r"investment", r"savings", r"budget",
            r"tips", r"is it a good idea", r"what would you do",
        ),
    ),
    "information_lookup": (
        0.5,
        (
            r"what is", r"what are", r"what's", r"who is", r"who was", r"when did", r"when was", r"where is",
            r"how does", r"how do", r"why do", r"why does", r"why is", r"explain", r"definition", r"define",
            r"meaning of", r"history of", r"tell me about", r"facts?", r"capital of", r"difference between",
            r"qu'est-ce que", r"qué es", r"was ist",
        ),
    ),
}  # fmt: skip

CODE_SIGNAL = re.compile(
    r"```|Traceback \(most recent call last\)|^\s*(?:def|class|import|from \S+ import) ", re.M
)

# (tier, category, patterns)
CONCERNING_LEXICON: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (5, "child sexual abuse", (
        r"child porn\w*", r"csam", r"(?:sex|sexual\w*) (?:with|of|involving) (?:a )?(?:child|children|minors?|kids?)",
        r"nudes? (?:photos? |pics? )?of (?:a )?(?:child|minor|kid)s?", r"groom(?:ing)? (?:a )?(?:child|minor|kid)",
    )),
    (5, "mass-casualty weapons", (
        r"build a bomb", r"make a bomb", r"pipe bomb", r"bioweapons?", r"biological weapons?", r"nerve agents?",
        r"sarin", r"anthrax", r"mass shooting", r"shoot up (?:a|the|my) school", r"terrorist attack",
        r"dirty bomb", r"chemical weapons?",
    )),
    (5, "suicide intent", (
        r"(?:going|want|plan(?:ning)?) to kill myself", r"kill myself", r"end my life", r"my suicide plan",
    )),
    (4, "violence against a person", (
        r"kill (?:him|her|them|someone|somebody|my (?:wife|husband|boss|neighbou?r|mother|father|ex))",
        r"murder (?:him|her|them|someone|somebody|my)", r"poison (?:him|her|them|someone|somebody|my)",
        r"hurt (?:him|her|them|someone|somebody)", r"hitman", r"hire a hitman", r"untraceable (?:gun|weapon)",
        r"ghost gun", r"torture",
    )),
    (4, "self-harm", (
        r"suicid(?:e|al)", r"self-?harm", r"cut myself", r"hurt myself", r"want to die", r"overdose",
    )),
    (4, "malware and serious crime", (
        r"ransomware", r"malware", r"keylogger", r"botnet", r"(?:make|cook|synthesi[sz]e) (?:meth|fentanyl|heroin|cocaine)",
        r"human trafficking", r"revenge porn", r"sextortion",
    )),
    (3, "hacking and fraud", (
        r"hack into", r"hacking", r"exploit", r"sql injection", r"ddos", r"phishing", r"stolen credit cards?",
        r"carding", r"fake ids?", r"counterfeit", r"launder(?:ing)? money", r"money laundering",
        r"bypass (?:the )?(?:security|paywall|drm|filter|2fa|authentication)", r"jailbreak", r"doxx?(?:ing)?",
        r"track (?:someone|my (?:wife|husband|girlfriend|boyfriend|ex))'?s? (?:phone|location)", r"spy on",
        r"steal (?:someone|a|their|his|her)", r"identity theft",
    )),
    (3, "weapons and harassment", (
        r"explosives?", r"buy a gun illegally", r"harass(?:ment|ing)?", r"blackmail", r"extort(?:ion)?",
        r"stalk(?:ing)?", r"threaten(?:ing)?",
    )),
    (2, "mild risk signals", (
        r"drugs?", r"weed", r"guns?", r"weapons?", r"violence", r"violent", r"fight", r"scam", r"scammed",
        r"cheat(?:ing)?", r"gambling", r"porn", r"nsfw", r"racist", r"hate speech", r"revenge", r"piracy",
        r"pirated", r"torrent", r"depressed", r"depression", r"lonely",
    )),
)  # fmt: skip


def _group(index: int) -> str:
    return f"g{index}"


# One alternation per lexicon, a named group per category, so that each text is scanned once.
_TASK_CATEGORIES: tuple[str, ...] = tuple(c for c in TASK_CHOICES if c != "other")
_TASK_REGEX = re.compile(
    r"(?<!\w)(?:"
    + "|".join(
        f"(?P<{_group(i)}>" + "|".join(TASK_LEXICON[c][1]) + ")" for i, c in enumerate(_TASK_CATEGORIES)
    )
    + r")(?!\w)"
)
_CONCERNING_REGEX = re.compile(
    r"(?<!\w)(?:"
    + "|".join(f"(?P<{_group(i)}>" + "|".join(p) + ")" for i, (_, _, p) in enumerate(CONCERNING_LEXICON))
    + r")(?!\w)"
)

if set(TASK_LEXICON) != set(TASK_CHOICES) - {"other"}:
    raise RuntimeError("TASK_LEXICON must have one entry per task choice except 'other'")


def task_scores(text: str, weight: float = 1.0) -> dict[str, float]:
    """Weighted keyword matches per task category in ``text`` (lower-cased by the caller)."""
    scores: dict[str, float] = {}
    for match in _TASK_REGEX.finditer(text):
        category = _TASK_CATEGORIES[int(match.lastgroup[1:])] if match.lastgroup else "other"
        scores[category] = scores.get(category, 0.0) + TASK_LEXICON[category][0] * weight
    return scores


def classify_task(user_texts: Sequence[str], max_chars: int = 2000) -> str:
    """The task category of the user's messages (see the module docstring)."""
    if not user_texts:
        return "other"
    first = user_texts[0][:max_chars]
    rest = "\n".join(user_texts[1:])[: max(0, max_chars - len(first))]
    opening = task_scores(first.lower(), FIRST_MESSAGE_WEIGHT)
    if CODE_SIGNAL.search(first):
        opening["coding"] = opening.get("coding", 0.0) + 3.0
    scores = dict(opening)
    for category, score in task_scores(rest.lower()).items():
        scores[category] = scores.get(category, 0.0) + score
    if CODE_SIGNAL.search(rest):
        scores["coding"] = scores.get("coding", 0.0) + 3.0
    best, best_key = "other", (0.0, 0.0)
    for category in _TASK_CATEGORIES:  # TASK_CHOICES order: a full tie goes to the earlier category
        key = (scores.get(category, 0.0), opening.get(category, 0.0))
        if key > best_key:
            best, best_key = category, key
    return best


@dataclass(frozen=True)
class ConcerningScore:
    score: int
    reason: str


def score_concerning(user_text: str, max_chars: int = 4000) -> ConcerningScore:
    """Concerning score 1–5 and its reason (see the module docstring)."""
    text = user_text[:max_chars].lower()
    top = 1
    matched: dict[str, str] = {}  # phrase -> "category, tier n"
    for match in _CONCERNING_REGEX.finditer(text):
        tier, category, _ = CONCERNING_LEXICON[int(match.lastgroup[1:])] if match.lastgroup else (1, "", ())
        matched.setdefault(match.group(0), f"{category}, tier {tier}")
        top = max(top, tier)
    if not matched:
        return ConcerningScore(1, "no concerning phrases found")
    score = min(5, top + 1) if len(matched) >= 3 else top
    listed = "; ".join(f"'{phrase}' ({label})" for phrase, label in list(matched.items())[:5])
    return ConcerningScore(score, f"matched {listed}")
