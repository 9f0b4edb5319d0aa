"""The LLM dialogue manager's generation: prefix caching equals plain generation, and grammar-guided
decoding always names a real tool with the right JSON skeleton (real SmolLM2, a few tokens)."""
import pytest

from course_utils.llm import conversational as cv
from course_utils.llm.tool_calling import (PREFILL, SYSTEM, LLMPolicy, SharedPrefix, generate_batch,
                                           generate_calls, shared_start, skeleton, tool_name_trie)



def test_skeleton_opens_the_first_argument():
    assert skeleton("ask") == PREFILL + 'ask", "arguments": {"question": "'
    assert skeleton("recommend") == PREFILL + 'recommend", "arguments": {"constraints": {'
    assert skeleton("item_info") == PREFILL + 'item_info", "arguments": {"item_id": '


def test_prefix_cache_gives_the_same_replies_as_plain_generation(llm):
    model, tokenizer = llm
    from course_utils.llm.prompting import render_chat

    prompts = [render_chat(tokenizer, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}])
               for text in ("Shopper: \"a coat\"", "Shopper: \"cheaper dark sneakers from Miro, please\"")]
    prefix = SharedPrefix(model, tokenizer, shared_start(tokenizer, SYSTEM))
    assert all(p.startswith(prefix.text) for p in prompts)
    assert generate_batch(model, tokenizer, prompts, 6, prefix) == generate_batch(model, tokenizer, prompts, 6)
    with pytest.raises(ValueError, match="shared prefix"):
        generate_batch(model, tokenizer, ["something else"], 2, prefix)


def test_guided_decoding_always_names_a_real_tool(llm):
    model, tokenizer = llm
    trie = tool_name_trie(tokenizer)
    assert len(trie) == len(cv.TOOLS)
    policy = LLMPolicy(model, tokenizer, n_items=3000)
    states = [cv.DialogueState(user=0, said=["I want a coat"]), cv.DialogueState(user=0, said=["how much is it?"])]
    replies = policy._generate([policy.messages(s, s.said[-1]) for s in states])
    names = [reply[len(PREFILL):].split('"')[0] for reply in replies]
    assert all(name in cv.TOOLS for name in names)
    assert all(reply.startswith(skeleton(name)) for reply, name in zip(replies, names))
    assert generate_calls(model, tokenizer, []) == []
