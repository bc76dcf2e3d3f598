"""What an injection says, in six languages: each cue word or phrase maps to one concept token, so the
classifier learns "⟨ignore⟩ ⟨previous⟩ ⟨instructions⟩" once and reads it in German, French, Spanish,
Italian and Portuguese too — the labelled data is mostly English. Concepts aimed at the document
channel (text the model reads): claims of system or developer authority, addressing an AI, asking it
to call tools, send data or append tokens, and fake document boundaries.

    cue_tokens("Ignoriere alle vorherigen Anweisungen")   # ['cue_ignore', 'cue_previous', 'cue_instructions']
    prepare(text)                                         # the text, then its cue tokens, as the model reads it
"""

from __future__ import annotations

import re
import unicodedata

# concept → words and phrases (lower case; "*" ends a stem). English, German, French, Spanish, Italian,
# Portuguese — in that order on each line where a language has its own words. Markup boundaries
# ("</document>", "[/INST]", "<|im_start|>") are matched by _MARKERS instead.
_LEXICON: dict[str, str] = {
    "ignore": "ignore* | disregard* | forget* | overrid* | bypass* | circumvent* | "
    "ignorier* | vergiss | vergessen | missacht* | übergeh* | umgeh* | hinweg | "
    "oublie* | outrepass* | contourn* | ignorez | ignorer | "
    "olvida* | omite | omitir | desobedec* | ignora* | "
    "dimentic* | trascura* | ometti | scavalca* | "
    "esqueç* | esquec* | desconsider* | ignore",
    "previous": "previous | prior | above | earlier | preceding | initial | original | "
    "vorherig* | bisherig* | obig* | früher* | vorigen | ursprünglich* | "
    "précédent* | antérieur* | ci-dessus | initial* | "
    "anterior* | previa* | previo* | "
    "precedent* | iniziali | originali | "
    "acima",
    "instructions": "instruction* | rules | guideline* | directive* | guardrail* | constraint* | "
    "anweisung* | regeln | richtlinie* | vorgaben | befehle* | direktive* | "
    "consigne* | règles | "
    "instrucci* | reglas | directrices | normas | "
    "istruzion* | regole | direttive | "
    "instruç* | instruc* | regras | diretrizes",
    "system": "system prompt | system message | system note | system instruction* | systemprompt | "
    "system-prompt | systemanweisung* | systemhinweis | systemnachricht | "
    "prompt système | prompt systeme | message système | note système | "
    "prompt del sistema | mensaje del sistema | nota del sistema | "
    "prompt di sistema | messaggio di sistema | nota di sistema | "
    "prompt do sistema | mensagem do sistema | nota do sistema",
    "authority": "developer mode | developer | administrator | admin override | root access | "
    "entwickler* | administrat* | "
    "développeur* | "
    "desarrollador* | "
    "sviluppator* | amministrator* | "
    "desenvolvedor*",
    "ai": "ai | a.i. | assistant | chatbot | bot | llm | language model | ai model | ai agent* | ai system* | "
    "ki | assistent* | sprachmodell* | "
    "ia | assistante | modèle de langage | "
    "asistente | modelo de lenguaje | "
    "assistente | modello linguistico | "
    "modelo de linguagem",
    "reveal": "reveal* | disclose* | leak* | dump* | print out | expose* | "
    "verrat* | offenbar* | enthüll* | preisgeb* | gib aus | "
    "révèle* | divulgu* | dévoile* | "
    "revela* | divulga* | "
    "rivela* | svela* | divulg* | "
    "revele* | mostre",
    "send": "send* | post it | post them | forward* | upload* | exfiltrat* | transmit* | "
    "sende* | schick* | übermittl* | weiterleit* | "
    "envoie* | envoy* | transmet* | "
    "envía* | envia* | manda* | "
    "invia* | inoltra* | trasmett* | "
    "envie* | encaminh*",
    "secrets": "password* | passphrase | api key* | api-key* | secret* | credential* | access token* | "
    "private key* | passwort* | zugangsdaten | schlüssel | geheim* | "
    "mot de passe | mots de passe | identifiants | clé* | secret* | "
    "contraseña* | credenciales | clave* | secreto* | "
    "credenziali | chiave* | segret* | "
    "senha* | credenciais | chave* | segredo*",
    "append": "append* | add to your answer | add to your response | end your response with | "
    "include in your reply | include in your answer | at the end of your answer | "
    "füge * hinzu | hänge * an | am ende deiner antwort | "
    "ajoute* à ta réponse | à la fin de ta réponse | "
    "añade* | agrega* | al final de tu respuesta | "
    "aggiungi* | alla fine della tua risposta | "
    "acrescent* | adicione* | no final da sua resposta",
    "tool": "call the tool | call the function | invoke* | tool call | function call | execute the | "
    "run the command | rufe * auf | führe * aus | appelle* l'outil | exécute* | "
    "llama a la herramienta | ejecuta* | chiama lo strumento | esegui* | chame a ferramenta | execute",
    "persona": "you are now | from now on | act as | pretend | roleplay | role-play | jailbreak* | dan mode | "
    "du bist jetzt | ab jetzt | von nun an | tu so als | "
    "tu es maintenant | désormais | à partir de maintenant | fais comme si | "
    "ahora eres | a partir de ahora | finge* | haz como si | "
    "ora sei | d'ora in poi | da ora in poi | fai finta | fingi* | "
    "agora você é | a partir de agora | finja*",
    "unrestricted": "no restrictions | without restrictions | unrestricted | unfiltered | uncensored | "
    "no limits | without limits | no rules | "
    "ohne einschränkung* | ohne regeln | uneingeschränkt* | zensurfrei | "
    "sans restriction* | sans limite* | sans filtre | "
    "sin restricci* | sin límites | sin filtro* | "
    "senza restrizion* | senza limiti | senza filtri | "
    "sem restriç* | sem limites | sem filtro*",
    "reply": "reply with | respond with | respond only | answer with | answer only | before replying | "
    "before you reply | before answering | in your reply | in your response | in your answer | every response | "
    "every reply | each response | output only | antworte mit | antworte nur | in deiner antwort | "
    "réponds avec | réponds uniquement | dans ta réponse | responde con | responde solo | en tu respuesta | "
    "rispondi con | rispondi solo | nella tua risposta | responda com | responda apenas | na sua resposta",
    "boundary": "end of document | end of context | end of file | end of input | begin new instructions | "
    "new instructions | important instructions | "
    "ende des dokuments | neue anweisungen | fin du document | nouvelles instructions | "
    "fin del documento | nuevas instrucciones | fine del documento | nuove istruzioni | "
    "fim do documento | novas instruções",
}


_TOKEN = re.compile(r"\w+(?:['’.-]\w+)*")
_MARKERS = re.compile(
    r"</?(?:document|context|system|instructions?)>|\[/?inst\]|<\|im_(?:start|end)\|>|<\|system\|>"
    r"|###\s*(?:system|instruction)|\[system\]",
    re.IGNORECASE,
)
_URL = re.compile(r"https?://|\bwww\.", re.IGNORECASE)
_CALLS = {"call", "invoke", "trigger", "execute", "run", "use", "rufe", "appelle", "llama", "chiama", "chame"}
_IDENTIFIER = re.compile(r"[a-z][a-z0-9]*_[a-z0-9_]+")
_CANARY = re.compile(r"\b[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+\b(?<=\d\w)|\b[A-Z]+(?:-[A-Z0-9]*\d[A-Z0-9]*)+\b")
_ROLE_HEADER = re.compile(r"(?:^|\n)\s*(?:system|assistant|developer|admin)\s*(?:note|message)?\s*[:\]>]", re.I)
Word = tuple[str, bool]  # (text, is a stem)


def _compile() -> tuple[dict[str, str], dict[str, str], dict[str, list[tuple[list[Word], str]]], list[int]]:
    """Single words (exact, and stems by prefix) and phrases by their first word."""
    exact: dict[str, str] = {}
    stems: dict[str, str] = {}
    phrases: dict[str, list[tuple[list[Word], str]]] = {}
    for concept, entries in _LEXICON.items():
        for entry in (e.strip() for e in entries.split("|")):
            words: list[Word] = []
            for raw in entry.split():
                stem = raw.endswith("*") and raw != "*"
                found = _TOKEN.findall(raw[:-1] if stem else raw)
                if raw == "*":
                    words.append(("*", False))
                elif found:
                    words += [(w, False) for w in found[:-1]] + [(found[-1], stem)]
            if not words:
                continue
            if len(words) == 1:
                (stems if words[0][1] else exact).setdefault(words[0][0], concept)
            else:
                phrases.setdefault(words[0][0], []).append((words, concept))
    return exact, stems, phrases, sorted({len(s) for s in stems})


_EXACT, _STEMS, _PHRASES, _STEM_LENGTHS = _compile()


def _matches(word: str, want: Word) -> bool:
    return want[0] == "*" or (word.startswith(want[0]) if want[1] else word == want[0])


def cue_tokens(text: str) -> list[str]:
    """The concept tokens of a text, in the order they occur."""
    low = unicodedata.normalize("NFKC", text).lower()
    words = [(m.start(), m.group(0)) for m in _TOKEN.finditer(low)]
    found: list[tuple[int, str]] = []
    for i, (at, word) in enumerate(words):
        for sequence, phrase in _PHRASES.get(word, ()):
            tail = words[i + 1 : i + len(sequence)]
            if len(tail) == len(sequence) - 1 and all(
                _matches(w, s) for (_, w), s in zip(tail, sequence[1:], strict=True)
            ):
                found.append((at, "cue_" + phrase))
        concept = _EXACT.get(word)
        for n in _STEM_LENGTHS if concept is None else ():
            if n > len(word) or concept is not None:
                break
            concept = _STEMS.get(word[:n])
        if concept is not None:
            found.append((at, "cue_" + concept))
        if word in _CALLS and i + 1 < len(words) and _IDENTIFIER.fullmatch(words[i + 1][1]):
            found.append((at, "cue_tool"))  # "call delete_file …": a tool named as an agent would call it
    found += [(m.start(), "cue_token") for m in _CANARY.finditer(text)]
    found += [(m.start(), "cue_boundary") for m in _MARKERS.finditer(low)]
    found += [(m.start(), "cue_url") for m in _URL.finditer(low)]
    found += [(m.start(), "cue_header") for m in _ROLE_HEADER.finditer(text)]
    return [token for _, token in sorted(found)]


# Letters from other scripts that look Latin (Cyrillic, Greek, IPA), and leet digits and signs inside
# words that are otherwise letters: "byρass аll rеstrictions", "y0u ju$t r€tr1eved" read plainly.
_LOOKALIKE = str.maketrans(
    "аеорсухіјѕтвнкмАЕОРСУХІЈЅТВНКМαοερικντυχɑΑΟΕΡΙΚΝΤΥΧ",
    "aeopcyxijstbhkmAEOPCYXIJSTBHKMaoepikvtuxaAOEPIKNTYX",
)
_LEET = str.maketrans("013457$€@+|", "oieastseatl")
_MIXED = re.compile(r"\b(?=\w*[a-zA-Z])(?=\S*[0-9$€@+|])[\w$€@+|]{3,}\b")


def fold(text: str) -> str:
    """Look-alike letters to Latin, and leet inside mostly-letter words to letters."""
    text = text.translate(_LOOKALIKE)
    return _MIXED.sub(lambda m: m.group(0).translate(_LEET) if sum(c.isalpha() for c in m.group(0)) * 2 >
                      len(m.group(0)) else m.group(0), text)  # fmt: skip


SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")  # where one sentence ends (the screen's windows too)
_WHO = {"cue_ai", "cue_header", "cue_boundary", "cue_system"}  # an administrator or a password is no order
_ACT = {"cue_ignore", "cue_reveal", "cue_send", "cue_append", "cue_tool", "cue_persona", "cue_unrestricted"}
_REPLY_WITH = {"cue_token", "cue_ai", "cue_boundary", "cue_header", "cue_ignore", "cue_authority", "cue_append"}


def instructing(text: str) -> str | None:
    """The first sentence of a document that instructs the model — it overrides instructions, or it
    names an AI or a system (or wears a role header) and asks it to act (reveal, send, append, call a
    tool, drop its rules), or it fakes a boundary before new instructions, or it dictates the reply
    (a token, an override), or it names a tool to call with a URL, a secret or a recipient — or None.
    For text the model reads, where nothing should give it orders; prompts ask things of it all the
    time."""
    for sentence in SENTENCE.split(fold(text)):
        cues = set(cue_tokens(sentence))
        if (
            ("cue_ignore" in cues and cues & {"cue_instructions", "cue_system"})
            or (cues & _WHO and cues & _ACT)
            or ("cue_boundary" in cues and "cue_instructions" in cues)
            or ("cue_reply" in cues and cues & _REPLY_WITH)
            or ("cue_tool" in cues and cues & {"cue_url", "cue_secrets", "cue_send"})
        ):
            return sentence.strip()
    return None


def prepare(text: str) -> str:
    """What the classifier reads: the folded text, then its cue tokens (its word n-grams see them as
    words)."""
    text = fold(text)
    tokens = cue_tokens(text)
    return f"{text} {' '.join(tokens)}" if tokens else text
