"""A synthetic stand-in for HuggingFaceH4/Multilingual-Thinking, generated offline.

Same columns (reasoning_language, developer, user, analysis, final, messages) so code written for
the real set runs unchanged. The tasks are small and deterministic (arithmetic, word games, facts)
with the reasoning written in one of five languages, and the reasoning grows with the effort
(low, medium, high) so that effort changes what a trained model generates.
"""

from __future__ import annotations

import random
from collections.abc import Callable

EFFORTS = ("low", "medium", "high")

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Spain": "Madrid", "Italy": "Rome", "Japan": "Tokyo",
    "Canada": "Ottawa", "Egypt": "Cairo", "Peru": "Lima", "Kenya": "Nairobi", "Norway": "Oslo",
    "Chile": "Santiago", "Greece": "Athens", "Poland": "Warsaw", "Cuba": "Havana", "Iran": "Tehran",
}
WORDS = ["planet", "river", "garden", "window", "silver", "market", "forest", "candle", "bridge",
         "pencil", "castle", "mirror", "harbor", "rocket", "violin", "meadow", "lantern", "puzzle"]

# Per language: (user asks, so, the answer is, step, check, double-check) phrases.
PHRASES = {
    "English": ("The user asks", "So", "The answer is", "Step", "Let me check", "It matches"),
    "French": ("L'utilisateur demande", "Donc", "La réponse est", "Étape", "Je vérifie", "Cela correspond"),
    "German": ("Der Nutzer fragt", "Also", "Die Antwort ist", "Schritt", "Ich prüfe", "Das stimmt"),
    "Spanish": ("El usuario pregunta", "Entonces", "La respuesta es", "Paso", "Compruebo", "Coincide"),
    "Italian": ("L'utente chiede", "Quindi", "La risposta è", "Passo", "Controllo", "Corrisponde"),
}
LANGUAGES = tuple(PHRASES)


def _addition(rng: random.Random) -> tuple[str, list[str], str, str]:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    steps = [f"{a} + {b}", f"{a} + {b} = {a + b}"]
    return f"What is {a} plus {b}?", steps, str(a + b), f"{a} plus {b} is {a + b}."


def _reverse(rng: random.Random) -> tuple[str, list[str], str, str]:
    word = rng.choice(WORDS)
    steps = [" ".join(word), " ".join(reversed(word))]
    return f"Reverse the word '{word}'.", steps, word[::-1], f"The reversed word is '{word[::-1]}'."


def _capital(rng: random.Random) -> tuple[str, list[str], str, str]:
    country = rng.choice(sorted(CAPITALS))
    city = CAPITALS[country]
    steps = [country, f"{country} -> {city}"]
    return f"What is the capital of {country}?", steps, city, f"The capital of {country} is {city}."


def _sort(rng: random.Random) -> tuple[str, list[str], str, str]:
    nums = rng.sample(range(1, 60), 4)
    ordered = sorted(nums)
    listed, result = ", ".join(map(str, nums)), ", ".join(map(str, ordered))
    steps = [listed, f"min = {ordered[0]}", result]
    return f"Sort these numbers: {listed}.", steps, result, f"In order: {result}."


def _vowels(rng: random.Random) -> tuple[str, list[str], str, str]:
    word = rng.choice(WORDS)
    vowels = [c for c in word if c in "aeiou"]
    steps = [" ".join(vowels), f"{len(vowels)}"]
    return (f"How many vowels are in '{word}'?", steps, str(len(vowels)),
            f"'{word}' has {len(vowels)} vowels.")


TASKS: tuple[Callable[[random.Random], tuple[str, list[str], str, str]], ...] = (
    _addition, _reverse, _capital, _sort, _vowels)


def _analysis(language: str, user: str, steps: list[str], answer: str, effort: str) -> str:
    asks, so, answer_is, step, check, matches = PHRASES[language]
    lines = [f"{asks}: {user}"]
    if effort == "low":
        lines.append(f"{answer_is} {answer}.")
    else:
        lines += [f"{step} {i}: {s}." for i, s in enumerate(steps, 1)]
        lines.append(f"{so} {answer_is.lower()} {answer}.")
    if effort == "high":
        lines += [f"{check}: {steps[-1]}.", f"{matches}: {answer}."]
    return " ".join(lines)


def make_rows(n: int, seed: int = 0, analysis_language: str | None = None) -> list[dict]:
    """Rows in the Multilingual-Thinking layout, plus the reasoning_effort each was written for.

    `analysis_language` writes every row's reasoning in that one language whatever the row asks
    for: the tiny base model is pre-trained on such rows, so it knows the chat format but ignores
    the requested reasoning language until LoRA fine-tuning teaches it to follow it, which is
    what fine-tuning on Multilingual-Thinking teaches gpt-oss.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        language = LANGUAGES[i % len(LANGUAGES)]
        effort = EFFORTS[(i // len(LANGUAGES)) % len(EFFORTS)]
        user, steps, answer, final = rng.choice(TASKS)(rng)
        developer = f"reasoning language: {language}"
        analysis = _analysis(analysis_language or language, user, steps, answer, effort)
        rows.append({
            "reasoning_language": language,
            "developer": developer,
            "user": user,
            "analysis": analysis,
            "final": final,
            "messages": [
                {"role": "system", "content": developer, "thinking": None},
                {"role": "user", "content": user, "thinking": None},
                {"role": "assistant", "content": final, "thinking": analysis},
            ],
            "reasoning_effort": effort,
        })
    return rows


def pretraining_text(row: dict) -> str:
    """The same content as plain prose, for pre-training the tiny base model before any chat format."""
    return f"Question: {row['user']}\nReasoning ({row['reasoning_language']}): {row['analysis']}\nAnswer: {row['final']}\n"
