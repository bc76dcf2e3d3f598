"""Citations the model left out, added as the answer streams.

Small local models rarely write ``[n]`` however they are asked (``bench/retrieval/citations.py``: the
0.5B default cited in 0 of 33 golden-set answers under the shipped instruction, and a worked example
bought 18% at the cost of its "I don't know" answers). So each finished sentence that states something
and carries no marker gets one: the number of the source that supports it under the ``grounded``
check's rule (most of its content words, every number it states, no negation the source lacks). A
sentence no source supports stays uncited, so the ``citations`` and ``grounded`` checks still see it.
Sentences the model cited itself are left alone.

The text streams as it comes; only a sentence's closing punctuation (and the space after it) waits
until the sentence is known to be over, so the marker goes before the full stop: "… five days [2]."
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from keel.checks.grounded import Grounding, is_claim
from keel.text import CITATION
from keel.types import ChatChunk

_ENDS = ".!?"
_CLOSERS = "\"')]*_”’"


class Citer:
    """Feed the answer's text in pieces; each call returns what may be shown now. ``close()`` flushes.
    With no sources (or ``on=False``) the text passes through unchanged."""

    def __init__(self, sources: Sequence[str], *, on: bool = True) -> None:
        self.on = on and bool(sources)
        self._grounding = Grounding(sources if self.on else ())  # the sources are read only when it is on
        self.added: list[int] = []  # the numbers added, one per sentence cited
        self._sentence: list[str] = []  # the open sentence's text (already shown)
        self._held = ""  # its closing punctuation and what follows, not shown yet

    def feed(self, text: str) -> str:
        if not self.on:
            return text
        return "".join(self._step(ch) for ch in text)

    def close(self) -> str:
        return self._finish("") if self.on else ""

    def cite_all(self, text: str) -> str:
        """The whole answer at once (a blocking call)."""
        return self.feed(text) + self.close()

    def _step(self, ch: str) -> str:
        held = self._held
        if held:
            if ch in _ENDS or (ch in _CLOSERS and not held[-1].isspace()):
                self._held += ch  # "?!", "...", a closing quote or bracket
                return ""
            if ch.isspace():
                self._held += ch  # the end, unless a marker follows: "… days. [2]"
                return ""
            if ch == "[" and held[-1].isspace():  # the model cites after its full stop: the sentence runs on
                self._sentence.append(held + ch)
                self._held = ""
                return held + ch
            if held[-1].isspace():  # a new sentence begins
                return self._finish(ch)
            self._sentence.append(held + ch)  # "3.5", "e.g": not an end
            self._held = ""
            return held + ch
        if ch in _ENDS:
            self._held = ch
            return ""
        if ch == "\n":  # a list item or a line without punctuation ends here too
            return self._finish(ch)
        self._sentence.append(ch)
        return ch

    def _finish(self, following: str) -> str:
        """End the open sentence: its marker (if it needs one), the held text, then ``following``."""
        sentence = "".join(self._sentence)
        marker = ""
        if sentence.strip() and not CITATION.search(sentence) and is_claim(sentence):
            claim = self._grounding.best(sentence)
            if claim.supported and claim.source is not None:
                self.added.append(claim.source + 1)
                gap = "" if sentence[-1].isspace() else " "
                marker = f"{gap}[{claim.source + 1}]"
        shown = marker + self._held + following
        self._sentence, self._held = [], ""
        if following and not following.isspace():
            self._sentence.append(following)
        return shown


async def cited_stream(chunks: AsyncIterator[ChatChunk], citer: Citer) -> AsyncIterator[str]:
    """A chat stream's text through ``citer``: what may be shown, as it may be shown."""
    async for chunk in chunks:
        if shown := citer.feed(chunk.text):
            yield shown
    if tail := citer.close():
        yield tail
