"""Part 2 of the course, LLMs in recommendation (survey Section 3).

One concept per module, so a student finds each idea in one file:
``documents`` (item texts and cached sentence embeddings), ``encoders`` (dense
retrieval, FAISS, user-embedding fusion), ``cross_encoders`` (reranking),
``prompting`` (prompt builders, fuzzy catalogue matching), ``ranking`` (the
KV-cache likelihood ranker), ``constrained`` (the title trie and constrained
decoding) and ``tuning`` (peft: LoRA and soft prompts).
"""
