"""AntifakePrompt training: the stages of one recipe, ``vision`` (one or more), ``pretrain``, ``prompt``.

``vision`` and ``pretrain`` are the demo's (the full model starts from pretrained InstructBLIP
weights and runs only ``prompt``); no pretrained VLM exists offline, so the small InstructBLIP
is built up the way InstructBLIP's own parts were:

``vision``: the vision encoder alone, standing in for InstructBLIP's pretrained EVA-CLIP
encoder, learns to tell the forgery engine's kinds apart (real, self-blend, donor blend,
autoencoder deepfake, region edit) through a linear head on its mean patch token
(``vision_head``; validation reads 1 - P(real) from it).

``pretrain``: with the vision encoder frozen, as InstructBLIP keeps it, the Q-Former and the
language model learn to answer visual questions about faces that the engine can answer from
each batch's label, kind, region vector and sentence ("Is this photo real?", "Is the nose
forged?", "How was this face made?", "Which parts of this face are forged?"), plus BLIP-2's
image-text matching (a Q-Former head). Trained jointly from random weights instead
(``method.stages: [pretrain, prompt]``), the encoder never learned: the image evidence stayed at
chance at the Q-Former while the same encoder with a linear head on its tokens learned
(``experiments/afp_path_probe.py``). The soft prompt is not trained here; the ``[*]`` rows are kept
equal to the embedding of ``init_word`` (the authors' optional initialisation) so the prompt
stage starts from it.

``prompt`` (the paper's method): everything frozen, only the two ``[*]`` embedding rows
(Q-Former and language model; 768 + 4096 = 4864 parameters at full size) are tuned with the
language-model loss on the answer "yes" (real) or "no" (fake) to "Is this photo real [*]?".
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.data import kinds
from training.data.sentences import PART_NAMES, REAL_SENTENCE, WHOLE_FACE_SENTENCES

from .base import MethodOptions, Stage, TrainingMethod, register_method

WHOLE_FACE_SENTENCE = WHOLE_FACE_SENTENCES[kinds.REGION]

#: How each kind of face was made, in words (the answer to the "kind" question).
KIND_ANSWERS = {kinds.REAL: "a camera photo", kinds.SBI: "a self-blend", kinds.DONOR: "a face swap",
                kinds.DEEPFAKE: "a deepfake", kinds.REGION: "a region edit"}
#: Region names as the questions say them (the person's left/right): the sentences' own part names.
PART_WORDS = PART_NAMES
REAL_QUESTION = "Is this photo real?"
KIND_QUESTION = "How was this face made?"
DESCRIBE_QUESTION = "Which parts of this face are forged?"
PART_QUESTION = "Is the {part} forged?"
DEFAULT_TASKS = {"real": 0.5, "kind": 0.15, "part": 0.2, "describe": 0.15}


def face_questions(batch: dict[str, Any], generator: torch.Generator | None = None,
                   tasks: dict[str, float] | None = None) -> tuple[list[str], list[str]]:
    """One (question, answer) pair per item, drawn from the tasks the engine's labels answer."""
    mix = {k: float(v) for k, v in (tasks or DEFAULT_TASKS).items() if float(v) > 0}
    names = list(mix)
    probs = torch.tensor([mix[n] for n in names])
    labels = batch["label"].tolist()
    kind_codes = batch["kind"].tolist()
    regions = batch["regions"].float()
    n = len(labels)
    draws = torch.multinomial(probs, n, replacement=True, generator=generator).tolist()
    parts = torch.randint(len(kinds.SENTENCE_REGIONS), (n,), generator=generator).tolist()
    questions, answers = [], []
    face_index = kinds.SENTENCE_REGIONS.index("face")
    for i in range(n):
        task = names[draws[i]]
        if task == "kind":
            questions.append(KIND_QUESTION)
            answers.append(KIND_ANSWERS.get(kind_codes[i], "a camera photo" if labels[i] == 0 else "a deepfake"))
        elif task == "part":
            j = parts[i]
            forged = bool(regions[i, j] > 0.5 or regions[i, face_index] > 0.5)
            questions.append(PART_QUESTION.format(part=PART_WORDS[kinds.SENTENCE_REGIONS[j]]))
            answers.append("yes" if forged else "no")
        elif task == "describe":
            questions.append(DESCRIBE_QUESTION)
            answers.append(batch["sentence"][i])
        else:
            questions.append(REAL_QUESTION)
            answers.append("no" if labels[i] == 1 else "yes")
    return questions, answers


def is_vision_stage(name: str) -> bool:
    """``vision`` and ``vision_<name>`` stages train the vision encoder alone (several of them,
    each with its own ``stages.<name>`` settings and data mix, make a curriculum)."""
    return name == "vision" or name.startswith("vision_")


def detection_answers(labels: torch.Tensor, answers: tuple[str, ...] = ("yes", "no")) -> list[str]:
    """"yes" for real (0), "no" for fake (1)."""
    return [answers[int(v)] for v in labels.tolist()]


@dataclass
class AntifakePromptOptions(MethodOptions):
    stages: list[str] | None = None  # default: pretrain, prompt
    freeze_vision: bool | None = None  # default: when a ``vision`` stage is in the list
    tasks: dict[str, float] | None = None  # pretraining question mix (default DEFAULT_TASKS)
    init_word: str | None = None  # the soft prompt starts as this word's embedding
    itm_weight: float = 1.0


@register_method
class AntifakePromptMethod(TrainingMethod):
    family = "antifake_prompt"
    options_class = AntifakePromptOptions

    def stages(self) -> list[Stage]:
        """``method.stages`` picks them (the full recipe runs only ``prompt``). ``pretrain``
        keeps the vision encoder frozen when ``method.freeze_vision`` (default: when the
        ``vision`` stage is in the list)."""
        wanted = self.options.stages if self.options.stages is not None else ["pretrain", "prompt"]
        freeze = (self.options.freeze_vision if self.options.freeze_vision is not None
                  else any(map(is_vision_stage, wanted)))
        tasks = DEFAULT_TASKS if self.options.tasks is None else self.options.tasks
        known = {"pretrain": Stage("pretrain", "mixed", {"tasks": tasks,
                                                         "freeze_vision": freeze}),
                 "prompt": Stage("prompt", "mixed")}
        known.update({name: Stage(name, "mixed") for name in wanted if is_vision_stage(name)})
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            raise ValueError(f"antifake_prompt has no stage(s) {unknown}; choose from vision, vision_<name>, "
                             "pretrain, prompt")
        return [known[name] for name in wanted]

    def trainable_parameters(self, model: nn.Module, stage: Stage) -> Iterable[nn.Parameter]:
        if stage.name == "prompt":
            return list(model.soft_prompt_parameters())
        vision = [*model.vlm.vision_model.parameters(),
                  *(model.vision_head.parameters() if model.vision_head is not None else ())]
        if is_vision_stage(stage.name):
            if model.vision_head is None:
                raise ValueError(f"{model.config.name}: the vision stage needs vision_head_classes > 0")
            return vision
        excluded = {id(p) for p in model.soft_prompt_parameters()}
        if stage.options.get("freeze_vision"):
            excluded |= {id(p) for p in vision}
        return [p for p in model.parameters() if id(p) not in excluded]

    def validation_model(self, model: nn.Module, stage: Stage) -> nn.Module:
        return VisionVerdict(model) if is_vision_stage(stage.name) else model

    @staticmethod
    def trainable_count(model: nn.Module, stage: Stage) -> int:
        return sum(p.numel() for p in AntifakePromptMethod().trainable_parameters(model, stage))

    def loss(self, model: nn.Module, batch: dict[str, Any], stage: Stage) -> dict[str, torch.Tensor]:
        image = batch["image"]
        if is_vision_stage(stage.name):
            logits = model.vision_logits(model.vision_tokens(image))
            return {"loss": F.cross_entropy(logits.float(), batch["kind"].to(logits.device))}
        if stage.name == "prompt":
            model.vlm.eval()  # frozen: also keeps a conv stem's batch-norm statistics as pre-trained
            questions = [model.config.prompt] * image.shape[0]
            answers = detection_answers(batch["label"], tuple(model.config.answers))
            return {"loss": model.answer_loss(image, questions, answers)}
        self.tie_soft_prompt_to(model, self.options.init_word)
        questions, answers = face_questions(batch, tasks=stage.options.get("tasks"))
        if stage.options.get("freeze_vision"):
            model.vlm.vision_model.eval()  # frozen, batch-norm statistics of a conv stem included
            with torch.no_grad():
                vision = model.vision_tokens(image)
        else:
            vision = model.vision_tokens(image)
        lm_loss = model.answer_loss(image, questions, answers, image_embeds=vision)
        parts = {"lm": lm_loss.detach()}
        loss = lm_loss
        weight = self.options.itm_weight
        if weight > 0 and getattr(model, "itm_head", None) is not None:
            logits, match = self.itm_pairs(model, vision, list(batch["sentence"]), batch["label"])
            itm = F.cross_entropy(logits.float(), match)
            loss = loss + weight * itm
            parts["itm"] = itm.detach()
        return {"loss": loss, **parts}

    @staticmethod
    def itm_pairs(model: nn.Module, vision: torch.Tensor, sentences: list[str], labels: torch.Tensor,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """BLIP-2's image-text matching against one caption, "This face is real.": a face
        matches it exactly when it is real, so the text never gives the answer away and the
        Q-Former must carry the evidence from the image (``sentences`` kept for other pairings)."""
        n = len(sentences)
        match = (labels == 0).long().to(vision.device)
        return model.itm_logits(vision, [REAL_SENTENCE] * n), match

    @staticmethod
    @torch.no_grad()
    def tie_soft_prompt_to(model: nn.Module, word: str | None) -> None:
        """Copy ``word``'s embedding into both ``[*]`` rows (textual inversion's ``init_word``)."""
        if not word:
            return
        lm_tok, qf_tok = model.lm_tokenizer, model.qformer_tokenizer
        lm_id = lm_tok(word, add_special_tokens=False).input_ids[0]
        qf_id = qf_tok(word, add_special_tokens=False).input_ids[0]
        q_table, lm_table = model.soft_prompt_tables(model.vlm)
        q_base = model.vlm.qformer.embeddings.word_embeddings.base
        lm_base = model.vlm.language_model.get_input_embeddings().base
        q_table.weight[0].copy_(q_base.weight[qf_id].float())
        lm_table.weight[0].copy_(lm_base.weight[lm_id].float())


class VisionVerdict(nn.Module):
    """A detector scored by its vision head alone: ``prob_fake`` = 1 - P(real kind)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.detector.vision_logits(self.detector.vision_tokens(x))
        return {"prob_fake": 1 - logits.float().softmax(-1)[:, kinds.REAL]}
