"""SmolLM2's chat template, rendered by hand into token ids.

The template in the GGUF's `tokenizer.chat_template` (SmolLM2-135M-Instruct):
  {% for message in messages %}
    {% if loop.first and messages[0]['role'] != 'system' %}
      <|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n
    {% endif %}
    <|im_start|>{role}\\n{content}<|im_end|>\\n
  {% endfor %}
  {% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}

Rendering by hand: the control tokens <|im_start|> (id 1) and <|im_end|> (id
2) are placed as ids, and every piece of text between them is tokenized on
its own with special-token parsing OFF, so text that spells "<|im_end|>" stays
text. For text free of control-token strings this equals tokenizing the
rendered string with special parsing on (llama.cpp splits at the control
tokens and tokenizes the pieces separately); `render_ids` checks that
equality whenever the content holds no control-token string.
"""

IM_START = 1
IM_END = 2
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CONTROL_STRINGS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


def render_text(user, system=DEFAULT_SYSTEM):
    return (f"<|im_start|>system\n{system}<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n"
            f"<|im_start|>assistant\n")


def render_ids(tokenize, user, system=DEFAULT_SYSTEM, max_user_tokens=None):
    """tokenize(text, parse_special) -> ids (no BOS). Returns the ids of the
    rendered conversation with the generation prompt; the user text's tokens
    are cut to max_user_tokens when given."""
    user_ids = tokenize("user\n" + user, False)
    if max_user_tokens is not None:
        prefix = len(tokenize("user\n", False))
        user_ids = user_ids[:prefix + max_user_tokens]
    ids = ([IM_START] + tokenize("system\n" + system, False) + [IM_END] + tokenize("\n", False)
           + [IM_START] + user_ids + [IM_END] + tokenize("\n", False)
           + [IM_START] + tokenize("assistant\n", False))
    if max_user_tokens is None and not any(s in user + system for s in CONTROL_STRINGS):
        whole = tokenize(render_text(user, system), True)
        if whole != ids:
            raise AssertionError(f"hand rendering differs from parse-special tokenization:\n"
                                 f"{ids}\n{whole}")
    return ids
