"""The LLM as dialogue manager: it writes one JSON tool call per turn (ReAct/Toolformer-style tool use).

:class:`LLMPolicy` renders each dialogue's state into a short chat prompt, lets the LLM write
``{"tool": ..., "arguments": {...}}`` for all active dialogues in one batched ``generate`` call,
checks every reply with :func:`conversational.parse_tool_call`, asks again once with the error
message in the prompt, and falls back to the rule policy when the retry fails too. It never
crashes on a bad reply, and it cannot invent an item: the tools, not the LLM, pick what is shown.

Decoding either is free (the reply is whatever the LLM writes) or *constrained*: the reply is
prefilled with ``{"tool": "`` and the tool name may only follow lesson 09's trie
(``llm.constrained.TitleTrie``) over the five tool names, so the name is always a real tool; the
arguments stay free. Generation stops where the JSON object closes (:class:`JSONObjectEnd`).
"""
from __future__ import annotations

import json

from course_utils.llm.conversational import TOOLS, RulePolicy, ToolCall, ToolCallError, parse_tool_call
from course_utils.hub import cache_argument
from course_utils.llm.constrained import TitleTrie
from course_utils.llm.prompting import render_chat

PREFILL = '{"tool": "'
SYSTEM = (
    "You are a shop assistant. Reply with one JSON tool call and nothing else. Examples:\n"
    '{"tool": "ask", "arguments": {"question": "Which tone would you like?"}}\n'
    '{"tool": "recommend", "arguments": {"constraints": {"category": "Coat", "tone": "dark"}}}\n'
    '{"tool": "search_catalogue", "arguments": {"query": "warm winter coat", "filters": {"category": "Coat"}}}\n'
    '{"tool": "item_info", "arguments": {"item_id": 12, "question": "How much is it?"}}')


def closes_json(text: str) -> bool:
    """Has ``text`` opened a JSON object and closed it again (braces outside strings balanced)?"""
    depth, in_string, escaped, opened = 0, False, False, False
    for char in text:
        if in_string:
            escaped, in_string = (False, in_string) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char == "{":
            depth, opened = depth + 1, True
        elif char == "}":
            depth -= 1
            if opened and depth == 0:
                return True
    return False


def _stopping(tokenizer, prompt_length: int, prefixes: list):
    import torch
    from transformers import StoppingCriteria

    class JSONObjectEnd(StoppingCriteria):
        """Stop a row once its reply holds one complete JSON object, or once it cannot start one."""

        def __call__(self, input_ids, scores, **kwargs):
            texts = tokenizer.batch_decode(input_ids[:, prompt_length:], skip_special_tokens=True)
            done = [closes_json(p + t) or bool((p + t).strip() and not (p + t).strip().startswith("{"))
                    for p, t in zip(prefixes, texts)]
            return torch.tensor(done, device=input_ids.device)

    return JSONObjectEnd()


class SharedPrefix:
    """The key/value cache of the text every prompt of a batch starts with (the system message), computed
    once and copied into each batch: only the rest of each prompt runs through the model."""

    def __init__(self, model, tokenizer, text: str):
        import torch

        if not isinstance(text, str) or not text:
            raise ValueError("the shared prefix must be a non-empty string")
        self.text, self.ids = text, tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([self.ids], device=model.device), use_cache=True)
            self.cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values


def generate_batch(model, tokenizer, prompts: list, max_new_tokens: int, prefix: SharedPrefix | None = None,
                   stopping=None, **options) -> list:
    """Greedy replies to rendered prompts in one batched ``generate`` call, special tokens removed.

    With ``prefix`` (whose text every prompt must start with), its cache is reused: the batch is
    ``prefix + padding + rest``, the padding masked out, so each reply equals plain left-padded generation.
    ``stopping``: a function (prompt length) -> StoppingCriteria.
    """
    import copy

    import torch

    if not prompts:
        return []
    head = prefix.ids if prefix is not None else []
    if prefix is not None and not all(p.startswith(prefix.text) for p in prompts):
        raise ValueError("every prompt must start with the shared prefix's text")
    rests = [tokenizer(p[len(prefix.text):] if prefix is not None else p, add_special_tokens=False)["input_ids"]
             for p in prompts]
    width, pad = max(len(r) for r in rests), tokenizer.pad_token_id
    ids = torch.tensor([head + [pad] * (width - len(r)) + r for r in rests], device=model.device)
    mask = torch.tensor([[1] * len(head) + [0] * (width - len(r)) + [1] * len(r) for r in rests], device=model.device)
    if prefix is not None:
        cache = copy.deepcopy(prefix.cache)
        cache.batch_repeat_interleave(len(prompts))
        options[cache_argument(model)] = cache
    if stopping is not None:
        options["stopping_criteria"] = [stopping(ids.shape[1])]
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=pad, **options)
    return tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)


def tool_name_trie(tokenizer) -> TitleTrie:
    """Lesson 09's trie over the tool names, each ending with the closing quote's token."""
    quote = tokenizer('"', add_special_tokens=False)["input_ids"]
    if len(quote) != 1:
        raise ValueError("the tokenizer splits a double quote into several tokens")
    trie = TitleTrie(end_token=quote[0])
    for n, name in enumerate(TOOLS):
        trie.add(tokenizer(name, add_special_tokens=False)["input_ids"], item=n)
    return trie


def skeleton(tool: str) -> str:
    """The JSON written for the LLM once it has chosen ``tool``: up to the value of its first argument."""
    first = next(iter(TOOLS[tool]))
    opening = '"' if TOOLS[tool][first] is str else "{" if TOOLS[tool][first] is dict else ""
    return f'{PREFILL}{tool}", "arguments": {{"{first}": {opening}'


def generate_calls(model, tokenizer, prompts: list, constrained: bool = True, max_new_tokens: int = 32,
                   prefix: SharedPrefix | None = None) -> list:
    """The LLM's JSON reply to each rendered prompt, greedy, stopped where the JSON object closes.

    Free: whatever it writes. Constrained (grammar-guided) in two batched steps: after ``{"tool": "`` it
    may only write one of the tool names (lesson 09's trie); then the JSON skeleton up to the first
    argument's value is written for it (:func:`skeleton`) and it fills in the values. The returned text
    includes what was written for it.
    """
    if not prompts:
        return []
    if not constrained:
        return generate_batch(model, tokenizer, prompts, max_new_tokens, prefix,
                              lambda n: _stopping(tokenizer, n, [""] * len(prompts)))
    trie = tool_name_trie(tokenizer)
    rests = [p + PREFILL for p in prompts]

    def allowed(batch_id, input_ids):
        generated = [t for t in input_ids[length[0]:].tolist()]
        return trie.next_tokens(generated) or [trie.end_token]

    length = [0]

    def stop_at_quote(n):
        length[0] = n
        from transformers import StopStringCriteria
        return StopStringCriteria(tokenizer, ['"'])

    names = generate_batch(model, tokenizer, rests, 8, prefix, stop_at_quote, prefix_allowed_tokens_fn=allowed)
    names = [n.split('"')[0] for n in names]
    starts = [skeleton(n) if n in TOOLS else PREFILL + n for n in names]
    filled = generate_batch(model, tokenizer, [p + s for p, s in zip(prompts, starts)], max_new_tokens, prefix,
                            lambda n: _stopping(tokenizer, n, starts))
    return [s + f for s, f in zip(starts, filled)]


def shared_start(tokenizer, system: str) -> str:
    """The rendered chat text every prompt with this system message starts with (up to the user's words)."""
    marker = "\u2063"
    return render_chat(tokenizer, [{"role": "system", "content": system},
                                   {"role": "user", "content": marker}]).split(marker)[0]


def state_message(state, utterance: str) -> str:
    """The dialogue state as the LLM reads it: the shopper's words, known constraints, shown ids."""
    known = json.dumps(state.constraints) if state.constraints else "nothing yet"
    shown = ", ".join(str(i) for i in state.last_shown) or "nothing yet"
    return f'Shopper: "{utterance}"\nKnown: {known}\nShown ids: {shown}'


class LLMPolicy:
    """The LLM chooses each tool call; one retry with the error, then ``fallback`` (a RulePolicy).

    ``log`` gets one dict per call: ``valid_first`` (the raw reply parsed), ``valid_retry``,
    ``fallback``, ``tool`` (the call run), ``error`` (the first error, if any) and ``unstated
    constraints`` (the LLM's call sets a filter value the shopper never stated).
    """

    def __init__(self, model, tokenizer, n_items: int, constrained: bool = True, retry: bool = True,
                 fallback: RulePolicy | None = None, max_new_tokens: int = 24):
        self.model, self.tokenizer, self.n_items = model, tokenizer, n_items
        self.constrained, self.retry, self.max_new_tokens = constrained, retry, max_new_tokens
        self.fallback = fallback or RulePolicy()
        self.name = "LLM (constrained name)" if constrained else "LLM (free JSON)"
        self.log: list = []
        self.prefix = None

    def messages(self, state, utterance: str) -> list:
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": state_message(state, utterance)}]

    def _parse(self, text: str):
        try:
            return parse_tool_call(text, self.n_items), None
        except ToolCallError as err:
            return None, str(err)

    def _generate(self, conversations: list) -> list:
        if self.prefix is None:  # the system message, run once and reused by every call
            self.prefix = SharedPrefix(self.model, self.tokenizer, shared_start(self.tokenizer, SYSTEM))
        prompts = [render_chat(self.tokenizer, m) for m in conversations]
        return generate_calls(self.model, self.tokenizer, prompts, self.constrained, self.max_new_tokens, self.prefix)

    def choose(self, states: list, updates: list, fallback_calls: list, tools=None) -> list:
        """(call, source, raw replies) per dialogue; source is "llm", "llm after retry" or "fallback"."""
        conversations = [self.messages(s, s.said[-1]) for s in states]
        first = self._generate(conversations)
        parsed = [self._parse(text) for text in first]
        again = [i for i, (call, _) in enumerate(parsed) if call is None] if self.retry else []
        second = dict(zip(again, self._generate([
            conversations[i] + [{"role": "assistant", "content": first[i]},
                                {"role": "user", "content": f"Error: {parsed[i][1]}. Reply with one valid JSON tool call."}]
            for i in again])))
        chosen = []
        for i, (call, error) in enumerate(parsed):
            raw, source = (first[i],), "llm"
            if call is None and i in second:
                raw = (first[i], second[i])
                call, source = self._parse(second[i])[0], "llm after retry"
            if call is None:
                call, source = fallback_calls[i], "fallback"
            stated = states[i].constraints
            added = {k: v for k, v in call.arguments.get("constraints", call.arguments.get("filters", {})).items()
                     if stated.get(k) != v} if source != "fallback" else {}
            self.log.append({"valid_first": error is None, "valid_retry": source == "llm after retry",
                             "fallback": source == "fallback", "tool": call.tool, "error": error,
                             "unstated constraints": bool(added)})
            chosen.append((call, source, raw))
        return chosen


__all__ = ["LLMPolicy", "PREFILL", "SYSTEM", "SharedPrefix", "ToolCall", "closes_json", "generate_batch", "generate_calls",
           "shared_start", "skeleton", "state_message", "tool_name_trie"]
