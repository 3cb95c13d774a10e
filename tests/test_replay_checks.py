"""The per-pair word diff: runs that join back into both texts, and bounded work on long outputs."""

from __future__ import annotations

import random

from oncall.replay.checks import DIFF_MAX_OPS, DIFF_WORD_BUDGET, word_diff


def sides(ops: list[list[str]]) -> tuple[str, str]:
    return ("".join(t for op, t in ops if op in "=-"), "".join(t for op, t in ops if op in "=+"))


def test_runs_join_back_into_both_texts() -> None:
    ops = word_diff("The parcel arrives on Tuesday.", "The parcel arrives on Friday, maybe.")
    assert ops[0] == ["=", "The parcel arrives on "]
    assert ["-", "Tuesday."] in ops and ["+", "Friday, maybe."] in ops
    assert sides(ops) == ("The parcel arrives on Tuesday.", "The parcel arrives on Friday, maybe.")
    assert word_diff(None, "x") == [["+", "x"]] and word_diff("", "") == []
    assert word_diff("same text", "same text") == [["=", "same text"]]


def test_one_change_in_a_long_output_is_one_run_between_the_common_parts() -> None:
    a = "The parcel arrives on Tuesday. " * 3000  # 18,000 words: far over the word-level budget
    b = a[:6200] + "It is delayed. " + a[6200:]  # after the 200th sentence
    ops = word_diff(a, b)
    assert [op for op, _ in ops] == ["=", "+", "="]
    assert sides(ops) == (a, b)


def test_long_multiline_outputs_go_line_by_line_and_still_join_back() -> None:
    rnd = random.Random(7)
    lines_a = [f"line {i}: " + " ".join(f"w{rnd.randint(0, 40)}" for _ in range(12)) for i in range(300)]
    lines_b = list(lines_a)
    for i in range(0, 300, 37):  # a word changed on every 37th line
        lines_b[i] = lines_b[i].replace("w", "W", 1)
    a, b = "\n".join(lines_a), "\n".join(lines_b)
    assert len(a.split()) * len(b.split()) > DIFF_WORD_BUDGET
    ops = word_diff(a, b)
    assert sides(ops) == (a, b)
    changed = [t for op, t in ops if op == "+"]
    assert len(changed) == 9 and all(len(t) < 10 for t in changed)  # word-sized runs, not whole blocks


def test_a_shuffled_long_output_is_replaced_whole_and_the_diff_is_capped() -> None:
    rnd = random.Random(3)
    words = [f"w{rnd.randint(0, 50)}" for _ in range(20000)]
    a, b = " ".join(words), " ".join(rnd.sample(words, len(words)))
    ops = word_diff(a, b)
    assert sides(ops)[0].startswith(words[0]) and len(ops) <= DIFF_MAX_OPS + 1
    many = word_diff(" ".join(f"a{i}" for i in range(240)), " ".join(f"b{i}" for i in range(240)))
    assert len(many) == DIFF_MAX_OPS + 1 and many[-1][0] == "…"


def test_a_long_single_paragraph_is_diffed_sentence_by_sentence() -> None:
    sentences = [f"Sentence {i} says the parcel is on its way." for i in range(1500)]
    changed = list(sentences)
    changed[700] = "Sentence 700 says the parcel is lost."
    a, b = " ".join(sentences), " ".join(changed)
    ops = word_diff(a, b)
    assert sides(ops) == (a, b)
    assert [t for op, t in ops if op == "-"] == ["on its way."] and [t for op, t in ops if op == "+"] == ["lost."]
