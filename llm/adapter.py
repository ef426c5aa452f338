"""The causal-LM adapter: answer-token likelihoods of a transformers model for the shared core.

Records are TOFU-style dicts with ``question`` and ``answer``. Loss and KL count answer tokens only;
padding and prompt tokens are masked everywhere.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from erasure import losses
from erasure.reference import Reference

PLAIN_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass
class LMBatch:
    """Token ids (B, T), attention mask (B, T), answer mask (B, T) marking the answer tokens, an optional soft
    prompt (1 or B, k, D) of input embeddings placed before the tokens (set by attacks), and the QA rows the
    batch was made from (what attacks generate answers to and judge against)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    answer_mask: torch.Tensor
    prefix: torch.Tensor | None = None
    rows: list[dict] = field(default_factory=list)


def check_tokenizer(model: Any, tokenizer: Any) -> None:
    """Refuse a tokenizer that does not belong to ``model``: more tokens than embedding rows, far fewer (an
    embedding table is padded by a few hundred rows at most, never 5%), or special tokens the model's config
    numbers differently.

    Raises:
        ValueError: naming the sizes or the token that disagree.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    n = len(tokenizer)
    source = getattr(model, "name_or_path", "") or "the model"
    if n > rows:
        raise ValueError(f"the tokenizer has {n} tokens but {source}'s embedding table has {rows} rows: they do not "
                         "belong together")
    if n < 0.95 * rows:
        raise ValueError(f"the tokenizer has {n} tokens but {source}'s embedding table has {rows} rows: is it this "
                         "model's tokenizer?")
    for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
        want = getattr(model.config, key, None)
        have = getattr(tokenizer, key, None)
        if isinstance(want, list):
            want = want if have in want else want[0]
        if want is not None and have is not None and want != have and key != "pad_token_id":
            raise ValueError(f"the tokenizer's {key.removesuffix('_id')} token is id {have} but {source}'s config says "
                             f"{want}: is it this model's tokenizer?")


class CausalLMAdapter:
    """Adapter over a transformers causal LM and its tokenizer.

    Args:
        model: a ``PreTrainedModel`` with a causal-LM head.
        tokenizer: its tokenizer (vocabulary must fit the model's embedding table).
        template: prompt template with ``{question}`` (ignored when ``use_chat_template``).
        use_chat_template: format questions with the tokenizer's chat template (default: when it has one).
        max_length: truncate longer examples (default: the model's ``max_position_embeddings``).
    """

    modality = "llm"
    default_selector = "all"
    deterministic_scores = True  # no sampling in the scores: the loop may cache reference NLLs per example

    def __init__(self, model: Any, tokenizer: Any, template: str = PLAIN_TEMPLATE, use_chat_template: bool | None = None,
                 max_length: int | None = None):
        check_tokenizer(model, tokenizer)
        self.model, self.tokenizer = model, tokenizer
        if use_chat_template is None:
            use_chat_template = getattr(tokenizer, "chat_template", None) is not None
        self.template, self.use_chat_template = template, use_chat_template
        self.max_length = max_length or getattr(model.config, "max_position_embeddings", None)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if self.pad_id is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token to pad with")
        self.prompt: Any = None  # a learned soft prompt (``llm.prompt_tuning.SoftPrompt``) before every input
        self.guard: Any = None  # an ECO guard (``erasure.guard.PromptGuard``) corrupting flagged prompts' embeddings

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return hasattr(model, "get_input_embeddings") and hasattr(model, "config") and not hasattr(model, "unet")

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any = None, **kwargs: Any) -> "CausalLMAdapter":
        if tokenizer is None:
            raise ValueError("an LLM needs its tokenizer: erase(model, tokenizer=tok, ...)")
        return cls(model, tokenizer, **kwargs)

    def adapter_weights(self) -> set[str] | None:
        """For a peft ``PeftModel``: the names (``"model.<param>"``) of its adapters' parameters, the only ones that
        may train (its base weights are not saved with it); for a model carrying a soft prompt, the prompt's
        (only the prompt is saved); None for a plain model."""
        if self.guard is not None:
            raise ValueError("this model carries an ECO guard (a prompt classifier, no weights of its own to "
                             "unlearn): unlearn its base model instead")
        if self.prompt is not None:
            return {f"prompt.{n}" for n, _ in self.prompt.named_parameters()}
        config = getattr(self.model, "peft_config", None)
        if not config or not hasattr(self.model, "get_base_model"):
            return None
        return {f"model.{n}" for n, _ in self.model.named_parameters() if any(f".{a}." in n for a in config)}

    @property
    def source(self) -> Path | None:
        """The folder the model was loaded from (for its ``recommended.json``), if any."""
        name = getattr(self.model, "name_or_path", None)
        return Path(name) if name and Path(name).is_dir() else None

    def modules(self) -> dict[str, torch.nn.Module]:
        extra = {name: m for name, m in (("prompt", self.prompt), ("guard", self.guard)) if m is not None}
        return {"model": self.model, **extra}

    def add_prompt(self, num_tokens: int, seed: int = 0, encoder: str = "none") -> Any:
        """Give the model a fresh soft prompt of ``num_tokens`` vocabulary embeddings (SPUL trains it; the model's
        weights stay as they are), reparameterised by ``encoder`` ("none" or P-tuning's "mlp"); returns it.
        Refused when it has one already."""
        from llm.prompt_tuning import init_prompt

        if self.prompt is not None:
            raise ValueError("the model already carries a soft prompt; start from the base model to train another")
        self.prompt = init_prompt(self.model, num_tokens, seed, encoder)
        return self.prompt

    def token_room(self) -> int | None:
        """The most tokens an input may have: the context length less the soft prompt's tokens (None: no limit)."""
        if not self.max_length:
            return None
        room = self.max_length - (self.prompt.num_tokens if self.prompt is not None else 0)
        if room < 2:
            raise ValueError(f"a soft prompt of {self.prompt.num_tokens} tokens leaves no room in the model's context "
                             f"of {self.max_length} tokens")
        return room

    def _prefix(self, prefix: torch.Tensor | None) -> torch.Tensor | None:
        """Input embeddings before the tokens: the learned soft prompt (when on), then an attack's prefix."""
        own = self.prompt.prefix() if self.prompt is not None else None
        if own is None or prefix is None:
            return own if prefix is None else prefix
        b = max(own.shape[0], prefix.shape[0])
        return torch.cat([own.expand(b, -1, -1), prefix.to(own.dtype).expand(b, -1, -1)], dim=1)

    def _inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prefix: torch.Tensor | None = None,
                prompt_mask: torch.Tensor | None = None, features: torch.Tensor | None = None) -> tuple[dict, int]:
        """The model's input arguments for these tokens and the number k of positions placed before them: the
        token ids as they are, or their embeddings, corrupted where an ECO guard flags the prompt (its positions:
        ``prompt_mask``, default all real tokens; what it reads: ``features``, default the prompt positions'
        pooled states), after the soft prompt and ``prefix`` (1 or B, k, D)."""
        prefix = self._prefix(prefix)
        guard = self.guard if self.guard is not None and self.guard.enabled else None
        if prefix is None and guard is None:
            return {"input_ids": input_ids, "attention_mask": attention_mask}, 0
        emb = self.model.get_input_embeddings()(input_ids)
        if guard is not None:
            prompt_mask = attention_mask if prompt_mask is None else prompt_mask
            features = self._pooled(input_ids, prompt_mask) if features is None else features
            emb = guard.apply(features, emb, positions=prompt_mask)
        if prefix is None:
            return {"inputs_embeds": emb, "attention_mask": attention_mask}, 0
        b, k = input_ids.shape[0], prefix.shape[-2]
        emb = torch.cat([prefix.to(emb.dtype).expand(b, -1, -1), emb], dim=1)
        return {"inputs_embeds": emb, "attention_mask": torch.cat([attention_mask.new_ones(b, k), attention_mask], 1)}, k

    def _logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prefix: torch.Tensor | None = None,
                prompt_mask: torch.Tensor | None = None, features: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, V) logits of the tokens' positions (``_inputs``)."""
        inputs, k = self._inputs(input_ids, attention_mask, prefix, prompt_mask, features)
        return self.model(**inputs).logits[:, k:]

    # ------------------------------------------------------------------ data
    def format_prompt(self, question: str, system: str | None = None) -> str:
        """The question as the model sees it (chat template or the plain template); ``system``, when given, is the
        chat's system message (placed before the question under the plain template)."""
        if self.use_chat_template:
            turns = [{"role": "system", "content": system}] if system else []
            turns.append({"role": "user", "content": question})
            return self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        return self.template.format(question=f"{system} {question}" if system else question)

    def prompt_text(self, row: dict) -> str:
        """A row's prompt as the model reads it: the question in the chat (or plain) template, or, for a plain-text
        row (``"plain": True``: a passage prefix the model continues, as MUSE's VerbMem feeds it), the question
        as it is; then the row's optional "answer_start"."""
        if row.get("plain"):
            return row["question"] + row.get("answer_start", "")
        return self.format_prompt(row["question"], row.get("system")) + row.get("answer_start", "")

    def collate(self, rows: Sequence[dict], shard: tuple[int, int] | None = None) -> LMBatch:
        """QA rows -> padded ids with an answer mask; ``shard`` is not needed (the scores draw nothing at random).
        A plain-text row's answer continues its text (a space between them, no end-of-sequence token: a passage
        goes on)."""
        seqs, masks = [], []
        for r in rows:
            p = self.tokenizer(self.prompt_text(r), add_special_tokens=True)["input_ids"]
            # the plain template ends with "Answer:", a chat template with the assistant's turn header
            a = self.tokenizer(("" if self.use_chat_template and not r.get("plain") else " ") + r["answer"].strip(),
                               add_special_tokens=False)["input_ids"]
            if self.tokenizer.eos_token_id is not None and not r.get("plain"):
                a = a + [self.tokenizer.eos_token_id]
            room = self.token_room()
            ids = (p + a)[:room] if room else p + a
            if len(ids) <= len(p):
                raise ValueError(f"example {r['question'][:40]!r} leaves no answer token within max_length")
            seqs.append(ids)
            masks.append([0] * len(p) + [1] * (len(ids) - len(p)))
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(seqs), width), dtype=torch.long)
        ans = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (s, m) in enumerate(zip(seqs, masks)):
            ids[i, : len(s)], attn[i, : len(s)], ans[i, : len(m)] = torch.tensor(s), 1, torch.tensor(m)
        dev = self.model.device
        return LMBatch(ids.to(dev), attn.to(dev), ans.to(dev), rows=list(rows))

    @torch.no_grad()
    def generate(self, rows: Sequence[dict], prefix: torch.Tensor | None = None, seeds: Sequence[int] | None = None,
                 max_new_tokens: int = 32, sampling: dict | None = None) -> list[str]:
        """Answers to each row's question, decoded (one row at a time, so padding never shifts a prompt): greedy,
        or sampled with ``sampling``.

        Args:
            rows: QA rows (``prompt_text``): a row's optional "answer_start" text is appended to its prompt (the
                answer is then continued from it, as MUSE's VerbMem does), its optional "system" text is the chat's
                system message; a plain-text row is continued as it is.
            prefix: a soft prompt (1, k, D) of input embeddings placed before every prompt (attacks).
            seeds: one per row, used only when sampling (row i draws from ``seeds[i]``, default i; the global
                random state is left as it was); greedy decoding ignores them.
            max_new_tokens: the most new tokens, within the model's context length.
            sampling: ``model.generate`` sampling options (e.g. ``{"temperature": 0.7, "top_p": 0.9}``); None =
                greedy.
        """
        model, tok = self.model, self.tokenizer
        if seeds is not None and len(seeds) != len(rows):
            raise ValueError(f"generate got {len(seeds)} seeds for {len(rows)} rows")
        out = []
        for i, r in enumerate(rows):
            ids = tok(self.prompt_text(r), return_tensors="pt", add_special_tokens=True)["input_ids"].to(model.device)
            options = {"do_sample": sampling is not None, "pad_token_id": self.pad_id, "eos_token_id": tok.eos_token_id,
                       **(sampling or {})}
            if sampling is None:
                out.append(self._generate_one(ids, prefix, options, max_new_tokens))
            else:
                with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
                    torch.manual_seed(seeds[i] if seeds is not None else i)
                    out.append(self._generate_one(ids, prefix, options, max_new_tokens))
        return out

    def _generate_one(self, ids: torch.Tensor, prefix: torch.Tensor | None, options: dict,
                      max_new_tokens: int) -> str:
        """One prompt's decoded continuation (``options``: the ``model.generate`` decoding options)."""
        inputs, k = self._inputs(ids, torch.ones_like(ids), prefix)
        length = ids.shape[1] + k
        if self.max_length and length >= self.max_length:
            raise ValueError(f"a prompt of {length} tokens leaves no room to answer within the model's context of "
                             f"{self.max_length} tokens")
        gen = self.model.generate(**inputs, max_new_tokens=self.room_to_generate(length, max_new_tokens), **options)[0]
        if "input_ids" in inputs:  # from token ids the output repeats the prompt; from embeddings it holds new tokens
            gen = gen[ids.shape[1]:]
        return self.tokenizer.decode(gen, skip_special_tokens=True).strip()

    @torch.no_grad()
    def text_nll(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Plain-text likelihood (no template): per text, the summed next-token NLL (N,) and the number of
        predicted tokens (N,), one text at a time."""
        nlls, counts = [], []
        for text in texts:
            ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=True)["input_ids"]
            ids = ids[:, : self.token_room()].to(self.model.device) if self.max_length else ids.to(self.model.device)
            # an ECO guard judges the text as a user would type it (the view its classifier was trained on)
            features = self.prompt_embeddings([text]) if self.guard is not None else None
            logits = self._logits(ids, torch.ones_like(ids), features=features)
            logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (1, T-1, V)
            nlls.append(-logp.gather(-1, ids[:, 1:, None]).sum())
            counts.append(ids.shape[1] - 1)
        return torch.stack(nlls).cpu(), torch.tensor(counts)

    def room_to_generate(self, prompt_length: int, max_new_tokens: int) -> int:
        """New tokens that fit in the model's context after a prompt of ``prompt_length`` (at least 1)."""
        limit = self.max_length or (prompt_length + max_new_tokens)
        return max(1, min(max_new_tokens, limit - prompt_length))

    # ------------------------------------------------------------------ scores
    def _logprobs(self, batch: LMBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-token log-probs (B, T-1, V) and the mask (B, T-1) of positions predicting answer tokens."""
        prompt = batch.attention_mask * (1 - batch.answer_mask)  # an ECO guard reads and corrupts the prompt only
        logits = self._logits(batch.input_ids, batch.attention_mask, batch.prefix, prompt)  # (B, T, V)
        return F.log_softmax(logits[:, :-1].float(), dim=-1), batch.answer_mask[:, 1:]

    def outputs(self, batch: LMBatch, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward of the model: next-token log-probs (B, T-1, V) and the answer mask (B, T-1), which
        ``per_example_nll`` and ``divergence_of`` read (``StepScores`` runs it once per split and step)."""
        return self._logprobs(batch)

    def per_example_nll(self, batch: LMBatch, generator: torch.Generator | None = None, smoothing: float = 0.0,
                        outputs: tuple[torch.Tensor, torch.Tensor] | None = None):
        """(summed answer-token NLL (B,), answer length (B,)); label-smoothed when ``smoothing`` != 0. ``outputs``:
        this batch's ``outputs`` when already computed."""
        logp, mask = outputs if outputs is not None else self._logprobs(batch)  # (B, T-1, V), (B, T-1)
        mask = mask.to(logp.dtype)
        tok = logp.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
        nll = -(tok * mask).sum(-1)  # (B,)
        if smoothing:
            uniform = -(logp.mean(-1) * mask).sum(-1)  # (B,) CE to a uniform label
            nll = losses.label_smoothed_nll(nll, uniform, smoothing)
        return nll, mask.sum(-1)

    def sampled_nll(self, batch: LMBatch, generator: torch.Generator | None = None):
        """(summed NLL (B,), answer length (B,)) of labels drawn from the model's own distribution at the answer
        positions: what Sophia's Gauss-Newton-Bartlett estimator differentiates (``erasure/sophia.py``)."""
        logp, mask = self._logprobs(batch)  # (B, T-1, V), (B, T-1)
        with torch.no_grad():
            where = mask.bool()
            probs = logp[where].detach().float().exp()  # (answer tokens, V)
            drawn = torch.multinomial(probs.cpu(), 1, generator=generator).to(logp.device)  # (answer tokens, 1)
            labels = torch.zeros(mask.shape, dtype=torch.long, device=logp.device)
            labels[where] = drawn.squeeze(-1)
        mask = mask.to(logp.dtype)
        tok = logp.gather(-1, labels[..., None]).squeeze(-1)  # (B, T-1)
        return -(tok * mask).sum(-1), mask.sum(-1)

    def hidden_states(self, batch: LMBatch, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Residual stream after block ``layer`` (B, T, D) and the mask (B, T) of real (non-pad) tokens.

        The forward stops at that block (the later blocks and the LM head are not computed), which is most of the
        cost of RMU's steps on an early layer; the result equals ``output_hidden_states``'s entry ``layer + 1``."""
        n = self.model.config.num_hidden_layers
        if self._prefix(batch.prefix) is not None or self.guard is not None:
            raise ValueError("hidden_states reads the tokens' activations as they are; this model carries a soft "
                             "prompt or an ECO guard (RMU does not combine with them)")
        if not 0 <= layer < n:
            raise ValueError(f"layer {layer} out of range: the model has {n} layers")
        blocks = _blocks(self.model, n)
        if blocks is None or layer == n - 1:  # the last entry of output_hidden_states is after the final norm
            out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
            return out.hidden_states[layer + 1], batch.attention_mask
        caught: list[torch.Tensor] = []

        def stop(module, args, output):
            caught.append(output[0] if isinstance(output, tuple) else output)
            raise _StopForward

        handle = blocks[layer].register_forward_hook(stop)
        try:
            self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        except _StopForward:
            pass
        finally:
            handle.remove()
        return caught[0], batch.attention_mask

    def output_divergence(self, batch: LMBatch, reference: Reference, generator: torch.Generator | None = None):
        """(B,) KL(reference || model) averaged over each row's answer positions."""
        with torch.no_grad(), reference.active():
            ref = self.reference_outputs(batch)
        return self.divergence_of(ref, self._logprobs(batch))

    def reference_outputs(self, batch: LMBatch, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Per row, the log-probs (answer tokens, V) at its answer positions: all of the reference's outputs that
        the KL reads, small enough to keep across steps (run under the reference, without gradients)."""
        logp, mask = self._logprobs(batch)
        return [lp[m.bool()] for lp, m in zip(logp, mask)]

    def divergence_of(self, reference: Sequence[torch.Tensor], outputs: tuple[torch.Tensor, torch.Tensor]):
        """(B,) KL(reference || model) averaged over each row's answer positions, from per-row
        ``reference_outputs`` and the model's ``outputs``."""
        logp, mask = outputs
        where = mask.bool()
        ref = torch.cat(tuple(reference)).to(logp.dtype)  # (answer tokens of the batch, V), row by row
        if ref.shape[0] != int(where.sum()):
            raise ValueError(f"reference outputs hold {ref.shape[0]} answer positions, the batch {int(where.sum())}")
        per_token = losses.kl_divergence(ref[:, None], logp[where][:, None])  # (answer tokens,)
        rows = torch.arange(mask.shape[0], device=logp.device)[:, None].expand_as(mask)[where]
        total = torch.zeros(mask.shape[0], dtype=per_token.dtype, device=logp.device).index_add(0, rows, per_token)
        return total / where.sum(-1).clamp_min(1)

    # ------------------------------------------------------------------ ECO (erasure/guard.py)
    @torch.no_grad()
    def _pooled(self, input_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """(B, D) the model's last hidden states averaged over each row's prompt positions (causal: the answer
        tokens after them do not change them): what the ECO classifier reads."""
        out = self.model(input_ids=input_ids, attention_mask=(prompt_mask > 0).long(), output_hidden_states=True)
        h = out.hidden_states[-1].float()  # (B, T, D)
        m = prompt_mask.to(h.dtype)[..., None]
        return (h * m).sum(1) / m.sum(1).clamp_min(1)

    def prompt_embeddings(self, texts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
        """(N, D) each text as a user turn, embedded as the pooled last hidden states of its prompt positions (what
        the ECO classifier reads; what the LLM judge's in-context examples are chosen by)."""
        feats = []
        for i in range(0, len(texts), batch_size):
            b = self.collate([{"question": t, "answer": "."} for t in texts[i:i + batch_size]])
            feats.append(self._pooled(b.input_ids, b.attention_mask * (1 - b.answer_mask)))
        return torch.cat(feats)

    def guard_features(self, rows: Sequence[dict]) -> torch.Tensor:
        """(N, D) classifier features of the prompts the rows stand for: each row's question and its answer text
        (both are what a user might type)."""
        return self.prompt_embeddings([t for r in rows for t in (r["question"], r["answer"]) if t and t.strip()])

    def guard_flags(self, questions: Sequence[str]) -> list[bool]:
        """Whether the ECO guard flags each question (as a user turn); all False without a guard."""
        if self.guard is None:
            return [False] * len(questions)
        return self.guard.flags(self.prompt_embeddings(questions)).tolist() if questions else []

    def guard_flag_rates(self, groups: dict[str, Sequence[str]]) -> dict[str, float | None]:
        """{group: share of its questions the ECO guard flags} (a benchmark reports them for a guarded model)."""
        return {name: (sum(f) / len(f) if f else None)
                for name, questions in groups.items() for f in [self.guard_flags(list(questions))]}

    def embedding_rms(self) -> float:
        """Root mean square of the token embedding table (ECO's noise unit)."""
        return float(self.model.get_input_embeddings().weight.detach().float().pow(2).mean().sqrt())

    def answer_prob(self, rows: Sequence[dict], batch_size: int = 16) -> float:
        """Mean over rows of exp(-mean answer-token NLL), the guard and prompt included."""
        probs = []
        with torch.no_grad():
            for i in range(0, len(rows), batch_size):
                nll, length = self.per_example_nll(self.collate(rows[i:i + batch_size]))
                probs.append(torch.exp(-nll / length))
        return float(torch.cat(probs).mean())

    def eco_reference(self, rows: Sequence[dict], target: float | None = None,
                      retain: Sequence[dict] | None = None) -> float:
        """The answer probability ECO aims the forget rows at: ``target``, else the probability this model gives
        the forget questions the *retain* rows' answers, in turn (a model that never learned the forget facts rates
        their answers like unrelated ones; forget rows about one subject would still rate each other's answers as
        likely)."""
        if target is not None:
            return target
        if not retain:
            raise ValueError("ECO's default target pairs each forget question with a retain row's answer: give a "
                             "retain set, or a target")
        return self.answer_prob([{**r, "answer": retain[i % len(retain)]["answer"]} for i, r in enumerate(rows)])

    def eco_distance(self, rows: Sequence[dict], reference: float) -> float:
        """|log p - log p*|: how far the forget answers' probability p (under the guard) is from the target p*."""
        return abs(math.log(max(self.answer_prob(rows), 1e-12)) - math.log(max(reference, 1e-12)))

    def save(self, path: str | os.PathLike) -> None:
        """The model folder; for a model with a soft prompt, the prompt alone as a peft prompt-tuning adapter
        folder (the weights are the base model's, unchanged) that ``LLM.load`` and ``PeftModel.from_pretrained``
        load onto the base."""
        if self.prompt is not None and self.guard is not None:
            raise ValueError("a model with both a soft prompt and an ECO guard cannot be saved as one adapter")
        if self.prompt is not None:
            from llm.prompt_tuning import save_prompt

            save_prompt(path, self.prompt, self.model, self.base_name(), save_base=self._save_model)
            return
        if self.guard is not None:
            from erasure.guard import save_guard

            save_guard(path, self.guard, self.base_name(), save_base=self._save_model)
            return
        self._save_model(path)

    def _save_model(self, path: str | os.PathLike) -> None:
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    def base_name(self) -> str | None:
        """The folder the model was loaded from, if any (where a saved soft prompt finds its base model)."""
        name = str(self.source) if self.source else getattr(self.model, "name_or_path", None)
        return name if name and Path(name).is_dir() else None

    def save_lora(self, path: str | os.PathLike, lora: dict) -> None:
        """Write trained LoRA adapters (``erasure.selectors.export_lora``) as the peft adapter folder that
        ``PeftModel.from_pretrained(base_model, path)`` loads onto the model this run started from."""
        import copy

        from safetensors.torch import save_file

        state, config = lora["model"]
        config = copy.deepcopy(config)
        config.base_model_name_or_path = str(self.source) if self.source else getattr(self.model, "name_or_path", None)
        config.task_type, config.inference_mode = "CAUSAL_LM", True
        path = Path(path)
        config.save_pretrained(path)
        save_file({f"base_model.model.{k}": v for k, v in state.items()}, path / "adapter_model.safetensors",
                  metadata={"format": "pt"})


class _StopForward(Exception):
    """Raised by a forward hook to end a forward pass early (``CausalLMAdapter.hidden_states``)."""


def _blocks(model: Any, n: int) -> Any:
    """The model's list of ``n`` transformer blocks (the first ``ModuleList`` of that length), or None."""
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    return None

