"""The title trie and constrained decoding: only catalogue titles come out (lesson 09)."""
import pytest

from course_utils.llm import constrained as C
from course_utils.llm.prompting import movie_titles, ranking_messages, render_chat


def test_trie_by_hand():
    trie = C.TitleTrie(end_token=0)
    trie.add([5, 6], item=10)
    trie.add([5, 7], item=11)
    trie.add([5], item=12)
    trie.add([5, 6], item=13)          # a second item with the same title
    assert len(trie) == 3 and trie.depth == 2
    assert sorted(trie.next_tokens([])) == [5]
    assert sorted(trie.next_tokens([5])) == [0, 6, 7]
    assert trie.next_tokens([5, 6]) == [0]
    assert trie.next_tokens([9]) == []
    assert trie.items([5, 6]) == [10, 13] and trie.items([5, 9]) == [] and [5, 7] in trie


def test_trie_bad_inputs():
    with pytest.raises(ValueError, match="end_token"):
        C.TitleTrie(end_token=-1)
    trie = C.TitleTrie(end_token=0)
    with pytest.raises(ValueError, match="at least one token"):
        trie.add([], 1)
    with pytest.raises(ValueError, match="end token"):
        trie.add([3, 0], 1)
    with pytest.raises(ValueError, match="every title was excluded"):
        C.trie_from_tokens([[1], [2]], end_token=0, exclude=[0, 1])
    with pytest.raises(ValueError, match="one item id per title"):
        C.trie_from_tokens([[1], [2]], end_token=0, items=[4])


def test_allowed_tokens_fn_follows_the_trie_then_only_ends():
    import torch

    trie = C.trie_from_tokens([[5, 6], [7]], end_token=0)
    allowed = C.allowed_tokens_fn(trie, prompt_length=2)
    assert sorted(allowed(0, torch.tensor([1, 2]))) == [5, 7]
    assert allowed(0, torch.tensor([1, 2, 5])) == [6]
    assert allowed(0, torch.tensor([1, 2, 7, 0])) == [0]



@pytest.mark.parametrize("mode", ["beam", "sample"])
def test_every_generated_title_is_in_the_catalogue(llm, movielens, mode):
    model, tokenizer = llm
    titles = movie_titles(movielens.items)
    history = [0, 49, 180]           # Toy Story, Star Wars, Return of the Jedi
    trie = C.build_title_trie(tokenizer, titles, exclude=history)
    prompt = render_chat(tokenizer, ranking_messages([titles[i] for i in history]))
    answers = C.constrained_titles(model, tokenizer, prompt, trie, n=5, do_sample=mode == "sample", seed=1)
    assert len(answers) == 5
    for answer in answers:
        assert answer["items"], f"{answer['text']!r} is not a catalogue title"
        assert {titles[i] for i in answer["items"]} == {answer["text"]}
        assert not set(answer["items"]) & set(history)
    if mode == "beam":
        assert len({a["text"] for a in answers}) == 5      # beams are distinct
    with pytest.raises(ValueError, match="num_beams"):
        C.constrained_titles(model, tokenizer, prompt, trie, n=5, num_beams=2)
