from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from keel.rag.citing import Citer
from keel.text import uncited

SOURCES = [
    "Plans: The Team plan costs $49 per month and includes 10 seats.",
    "Card refunds take 5 to 10 business days to appear on your statement. Annual plans can be refunded "
    "within 30 days of purchase.",
]


def streamed(text: str, size: int, sources: list[str] = SOURCES) -> tuple[str, list[int]]:
    citer = Citer(sources)
    out = "".join(citer.feed(text[i : i + size]) for i in range(0, len(text), size)) + citer.close()
    return out, citer.added


def test_each_supported_sentence_gets_the_source_that_supports_it_before_its_full_stop() -> None:
    text = "Card refunds take 5 to 10 business days. The Team plan costs $49 per month. Hope this helps!"
    out, added = streamed(text, 4)
    assert out == "Card refunds take 5 to 10 business days [2]. The Team plan costs $49 per month [1]. Hope this helps!"
    assert added == [2, 1]  # "Hope this helps!" is not a claim


def test_unsupported_sentences_stay_uncited() -> None:
    # a number no source states, and a claim in no source: the citation and grounded checks still see them
    text = "Card refunds take 3 business days. The moon is made of cheese, says everyone."
    assert streamed(text, 5) == (text, [])


def test_the_models_own_markers_are_left_alone_before_or_after_the_full_stop() -> None:
    for text in (
        "The Team plan costs $49 per month [2]. Card refunds take 5 to 10 business days.",
        "Card refunds take 5 to 10 business days. [1] The plan is fine.",
    ):
        out, _ = streamed(text, 3)
        assert out.startswith(text.split(".")[0])  # the first sentence is not cited again
    out, added = streamed("The Team plan costs $49 per month [2]. Card refunds take 5 to 10 business days.", 3)
    assert out.endswith("business days [2].") and added == [2]


def test_decimals_abbreviations_lists_and_closing_quotes() -> None:
    out, _ = streamed("The Team plan costs $49.00 per month.", 2, ["The Team plan costs $49.00 per month."])
    assert out == "The Team plan costs $49.00 per month [1]."
    out, _ = streamed("- The Team plan costs $49 per month\n- Card refunds take 5 to 10 business days\n", 7)
    assert out == "- The Team plan costs $49 per month [1]\n- Card refunds take 5 to 10 business days [2]\n"
    out, _ = streamed('They said "card refunds take 5 to 10 business days." Done.', 6)
    assert out == 'They said "card refunds take 5 to 10 business days [2]." Done.'


def test_without_sources_or_switched_off_the_text_passes_through() -> None:
    text = "Card refunds take 5 to 10 business days."
    assert streamed(text, 3, []) == (text, [])
    citer = Citer(SOURCES, on=False)
    assert citer.feed(text) + citer.close() == text and citer.added == []


WORDS = ["a", "b", " ", ".", "!", "?", "\n", "[", "]", "1", '"', "$49", "Team plan ", "refunds ", "10 ", "costs "]


@given(st.lists(st.sampled_from(WORDS), max_size=40).map("".join), st.integers(1, 9))
def test_streaming_in_any_pieces_gives_the_whole_answer_plus_markers_only(text: str, size: int) -> None:
    whole = Citer(SOURCES).cite_all(text)
    assert streamed(text, size)[0] == whole
    # only markers are added: no character lost, moved or changed (uncited() also takes the space before one)
    assert "".join(uncited(whole).split()) == "".join(uncited(text).split())
