"""Reading what a GPT-OSS model generated: which harmony channels, and how many tokens in each."""

from __future__ import annotations

END_TOKENS = ("<|end|>", "<|return|>", "<|call|>")


def channel_token_counts(ids: list[int], tokenizer) -> dict[str, int]:
    """Tokens per channel (analysis, final, ...) in one generated sequence, up to its <|return|>.

    Exact, from token ids: `<|channel|>NAME<|message|>` opens a channel, an end token closes it.
    Tokens outside any channel (e.g. garbage from an untrained model) count under "none".
    """
    special = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|channel|>", "<|message|>", *END_TOKENS)}
    ends = {special[t] for t in END_TOKENS}
    counts: dict[str, int] = {}
    channel, name_ids, reading_name = None, [], False
    for tid in ids:
        if tid == special["<|channel|>"]:
            channel, name_ids, reading_name = None, [], True
        elif reading_name and tid == special["<|message|>"]:
            channel, reading_name = tokenizer.decode(name_ids).strip() or "unnamed", False
        elif reading_name:
            name_ids.append(tid)
        elif tid in ends:
            if tid == special["<|return|>"]:
                break
            channel = None
        else:
            key = channel or "none"
            counts[key] = counts.get(key, 0) + 1
    return counts


def split_channels(text: str) -> list[tuple[str, str]]:
    """Decoded harmony text as (channel, message) pairs, for showing a sample the way a reader
    thinks of it (the reasoning apart from the answer). Text outside any channel is ("none", text)."""
    import re

    parts: list[tuple[str, str]] = []
    pattern = re.compile(r"<\|channel\|>(.*?)<\|message\|>(.*?)(?:<\|end\|>|<\|return\|>|<\|call\|>|$)", re.S)
    last = 0
    for match in pattern.finditer(text):
        before = re.sub(r"<\|[a-z]+\|>", " ", text[last:match.start()]).strip()
        if before and before != "assistant":
            parts.append(("none", before))
        parts.append((match.group(1).strip() or "unnamed", match.group(2).strip()))
        last = match.end()
    rest = re.sub(r"<\|[a-z]+\|>", " ", text[last:]).strip()
    if rest and rest != "assistant":
        parts.append(("none", rest))
    return parts
