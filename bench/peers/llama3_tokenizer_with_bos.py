#!/usr/bin/env python3
"""Writes the Llama 3 tokenizer.json with Meta's BOS post-processor put back.

The copy in ../shared/tokenizers/llama3 has a ByteLevel post-processor only;
Meta's file adds <|begin_of_text|> (128000) in front of every encoding through
a TemplateProcessing step after it. llama.cpp's converter hashes an encoding
WITH special tokens to name the pre-tokenizer, so it needs the BOS to recognise
`llama-bpe` (see make_lg3_1b_random_gguf.sh). Vocabulary, merges, added tokens
and the pre-tokenizer are copied unchanged.

  python3 llama3_tokenizer_with_bos.py IN/tokenizer.json OUT/tokenizer.json
"""

import json
import sys

BOS = "<|begin_of_text|>"
BOS_ID = 128000


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        tok = json.load(f)
    post = tok.get("post_processor") or {}
    if post.get("type") != "ByteLevel":
        sys.exit(f"{sys.argv[1]}: expected a ByteLevel post_processor, found {post.get('type')!r}")
    if tok["model"]["vocab"].get(BOS) != BOS_ID and not any(
            t["content"] == BOS and t["id"] == BOS_ID for t in tok.get("added_tokens", [])):
        sys.exit(f"{sys.argv[1]}: {BOS} is not id {BOS_ID}")
    bos = {"SpecialToken": {"id": BOS, "type_id": 0}}
    template = {
        "type": "TemplateProcessing",
        "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {BOS: {"id": BOS, "ids": [BOS_ID], "tokens": [BOS]}},
    }
    tok["post_processor"] = {"type": "Sequence", "processors": [post, template]}
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
