"""Realistic synthetic multi-turn conversations (support chats and assistant use) for tests and the benchmark.

Deterministic for a seed. Openings come in several languages, some carry PII, replies are paragraph-sized.
"""

from __future__ import annotations

import random

from briefxai_facets.definitions import Conversation, Message

OPENINGS: list[tuple[str, str, str]] = [
    # (language, task, text)
    (
        "en",
        "account_billing",
        "Hi there, I was charged twice for my subscription this month and I need a refund for "
        "the second payment. My email is jane.doe{n}@example.com if you need it.",
    ),
    (
        "en",
        "troubleshooting",
        "Hello, my router keeps disconnecting every few minutes and the wifi is not working "
        "on any of my devices since the last update. I already tried to restart it twice.",
    ),
    (
        "en",
        "coding",
        "Can you help me write a Python function that parses a CSV file and returns the average of "
        "the third column? Here is what I have so far:\n```python\nimport csv\ndef avg(path):\n    pass\n```",
    ),
    (
        "en",
        "writing",
        "Please help me rewrite this cover letter so it sounds more confident and professional, "
        "it is for a marketing manager position at a large company.",
    ),
    (
        "en",
        "creative",
        "Write a short bedtime story about a dragon who is afraid of the dark and a little girl "
        "who helps him find his courage.",
    ),
    (
        "en",
        "product_inquiry",
        "How much does the enterprise plan cost per seat, and do you offer a discount for "
        "nonprofits or annual billing? We are a team of about forty people.",
    ),
    (
        "en",
        "advice",
        "I got two job offers and I can't decide. Should I take the startup with equity or the "
        "stable corporate job with a higher salary? Any advice would help.",
    ),
    (
        "en",
        "information_lookup",
        "What is the difference between a virus and a bacterium, and why do antibiotics "
        "only work on one of them?",
    ),
    (
        "en",
        "analysis",
        "I have a spreadsheet with monthly sales data for three years. Can you analyze the trend "
        "and tell me if there is a seasonal pattern? Median sales were around 40k.",
    ),
    (
        "es",
        "account_billing",
        "Hola, no puedo iniciar sesión en mi cuenta, olvidé mi contraseña y el enlace para "
        "restablecerla no llega a mi correo. Mi teléfono es +34 612 345 678.",
    ),
    (
        "es",
        "troubleshooting",
        "Buenas tardes, la aplicación no funciona desde ayer, se cierra sola cada vez que "
        "intento abrirla en mi teléfono.",
    ),
    (
        "fr",
        "account_billing",
        "Bonjour, je voudrais annuler mon abonnement avant la fin du mois et obtenir un "
        "remboursement pour la facture de mars, s'il vous plaît.",
    ),
    (
        "de",
        "account_billing",
        "Hallo, ich habe eine Frage zu meiner letzten Rechnung. Der Betrag ist viel höher "
        "als sonst und ich verstehe nicht warum.",
    ),
    (
        "pt",
        "troubleshooting",
        "Olá, a impressora não funciona depois da atualização do sistema, aparece uma "
        "mensagem de erro e ela não imprime nada.",
    ),
    (
        "it",
        "product_inquiry",
        "Buongiorno, vorrei sapere se il modello nuovo è disponibile in magazzino e quanto "
        "costa la spedizione in Italia.",
    ),
    (
        "ru",
        "coding",
        "Привет! Помоги мне, пожалуйста, написать функцию на Python, которая сортирует список "
        "словарей по ключу.",
    ),
    (
        "ja",
        "account_billing",
        "こんにちは。パスワードを忘れてしまい、アカウントにログインできません。"
        "リセットの方法を教えてください。",
    ),
    ("zh", "product_inquiry", "你好，我想了解一下你们的企业版价格，以及是否可以免费试用三十天。"),
    ("en", "other", "ok"),
]

FOLLOW_UPS_EN = [
    "Thanks, that helps a lot. One more thing: what happens if it still does not work tomorrow?",
    "I tried that but it did not change anything, I am getting really frustrated with this.",
    "Great, that worked perfectly! Thank you so much for the quick help.",
    "Can you explain the second step in more detail? I am not sure where to find that setting.",
    "Call me at (415) 555-{n:04d} if it is easier, I am available all afternoon.",
    "That is not what I asked. I need the answer for the annual plan, not the monthly one.",
]

FOLLOW_UPS_OTHER: dict[str, list[str]] = {
    "es": ["Gracias, lo intenté pero sigue sin funcionar.", "Perfecto, muchas gracias por la ayuda."],
    "fr": ["Merci, mais je n'ai toujours pas reçu de réponse.", "Parfait, merci beaucoup pour votre aide."],
    "de": ["Danke, aber das Problem besteht leider weiterhin.", "Super, vielen Dank für die schnelle Hilfe."],
    "pt": ["Obrigado, mas ainda não funciona.", "Perfeito, muito obrigado pela ajuda."],
    "it": ["Grazie, ma non ho ancora ricevuto nulla.", "Perfetto, grazie mille per l'aiuto."],
    "ru": ["Спасибо, но это всё ещё не работает.", "Отлично, большое спасибо за помощь!"],
    "ja": ["ありがとうございます。でもまだログインできません。", "解決しました。ありがとうございました。"],
    "zh": ["谢谢，但是还是不行。", "太好了，非常感谢你的帮助。"],
}

REPLIES = [
    "I'm sorry to hear about the trouble. Let me walk you through a few steps that usually solve this. First, "
    "open the settings page and check that your details are up to date. Then sign out, wait a minute and sign "
    "in again. If the problem persists, I can open a ticket with our technical team and they will follow up "
    "within one business day.",
    "Sure! Here is a version you can use. I kept the structure of your original text but tightened the wording "
    "and moved the strongest points to the beginning so they stand out. Let me know if you want it shorter or "
    "in a different tone.",
    "Good question. In short, the two differ in how they are built and how they reproduce, which is why the "
    "treatments differ as well. I can go into more detail on any part if that would help.",
    "Thanks for the details. I have checked your account and I can see the issue. I have applied a correction, "
    "and you should see the change reflected within three to five business days.",
]


def make_conversations(count: int, seed: int = 7) -> list[Conversation]:
    rng = random.Random(seed)
    conversations = []
    for index in range(count):
        language, _, opening = OPENINGS[index % len(OPENINGS)]
        follow_ups = FOLLOW_UPS_OTHER.get(language, FOLLOW_UPS_EN)
        messages = [Message("system", "You are a helpful support assistant.")] if rng.random() < 0.3 else []
        messages.append(Message("user", opening.format(n=index)))
        for _ in range(rng.randint(1, 5)):
            messages.append(Message("assistant", rng.choice(REPLIES)))
            if rng.random() < 0.8:
                messages.append(Message("user", rng.choice(follow_ups).format(n=index % 10_000)))
        conversations.append(Conversation(id=f"c{index}", user_id="", messages=messages))
    return conversations
