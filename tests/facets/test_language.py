"""Language of what the user wrote, restricted to the configured languages."""

from __future__ import annotations

import pytest

from briefxai_facets.language import LanguageIdentifier, languages_from_codes, shared_identifier


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return shared_identifier()


@pytest.mark.parametrize(
    ("code", "text"),
    [
        ("en", "I was charged twice for my subscription and I would like a refund, please."),
        ("es", "Hola, no puedo iniciar sesión en mi cuenta y olvidé mi contraseña."),
        ("fr", "Bonjour, je voudrais annuler mon abonnement avant la fin du mois."),
        ("de", "Hallo, ich habe eine Frage zu meiner letzten Rechnung, der Betrag ist falsch."),
        ("it", "Buongiorno, vorrei sapere quanto costa la spedizione in Italia."),
        ("pt", "Olá, a impressora não funciona depois da atualização do sistema."),
        ("ru", "Привет! Помоги мне написать функцию на Python для сортировки списка."),
        ("ja", "パスワードを忘れてしまい、アカウントにログインできません。"),
        ("zh", "你好，我想了解一下你们的企业版价格。"),
        ("ko", "안녕하세요, 비밀번호를 잊어버렸어요. 어떻게 재설정하나요?"),
        ("ar", "مرحبا، لا أستطيع تسجيل الدخول إلى حسابي منذ الأمس."),
    ],
)
def test_detects_languages(identifier: LanguageIdentifier, code: str, text: str) -> None:
    assert identifier.detect([text]) == code


@pytest.mark.parametrize("texts", [[], [""], ["ok"], ["thanks!"], ["?? 123 !!"], ["hi", "yes"]])
def test_too_short_is_undetermined(identifier: LanguageIdentifier, texts: list[str]) -> None:
    assert identifier.detect(texts) == "und"


def test_first_message_decides(identifier: LanguageIdentifier) -> None:
    texts = [
        "Bonjour, je n'arrive plus à me connecter à mon compte depuis hier soir, pouvez-vous m'aider ?",
        "Sorry, English is fine too if that is easier for you, I just need this fixed quickly today.",
    ]
    assert identifier.detect(texts) == "fr"


def test_short_opening_borrows_from_later_messages(identifier: LanguageIdentifier) -> None:
    assert identifier.detect(["hola", "necesito ayuda con mi factura del mes pasado"]) == "es"


def test_unknown_code_is_rejected() -> None:
    with pytest.raises(ValueError, match="xx"):
        languages_from_codes(["en", "xx"])
