"""Per-process memos stay bounded and keep what is in use."""

from surveys import memo


def test_a_memo_keeps_the_most_recently_used_entries_up_to_its_size():
    recent = memo.Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # "a" is now the most recent
    recent.put("c", 3)  # the oldest, "b", goes
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == (1, None, 3)
    assert len(recent) == 2


def test_clear_all_empties_every_memo():
    first, second = memo.Recent(4), memo.Recent(4)
    first.put("a", 1)
    second.put("b", 2)
    memo.clear_all()
    assert (len(first), len(second)) == (0, 0)
