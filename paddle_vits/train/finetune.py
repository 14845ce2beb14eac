"""Fine-tuning helpers applied from the training side: freezing, layer-wise LR decay, recompute."""
import functools
import re

import paddle


def classifier_parameter_names(model):
    """Names of the classifier's parameters (``get_classifier()``, and Wave-ViT's ``aux_head``)."""
    heads = [model.get_classifier()]
    if getattr(model, "aux_head", None) is not None:
        heads.append(model.aux_head)
    ids = {id(p) for h in heads for p in h.parameters()}
    return [n for n, p in model.named_parameters() if id(p) in ids]


def freeze_all_but_classifier(model):
    """Set ``stop_gradient`` on every parameter outside the classifier (linear probing); returns the kept names."""
    keep = set(classifier_parameter_names(model))
    for name, p in model.named_parameters():
        p.stop_gradient = name not in keep
    return sorted(keep)


_INDEX = re.compile(r"^(.*\.\d+)(?:\.|$)")


def layer_ids(model):
    """Depth of every parameter for layer-wise LR decay: ``{name: id}`` and the number of blocks ``L``.

    A parameter under a numbered sub-layer (``blocks.3``, ``layers.1.blocks.0``) belongs to the block
    that the longest numbered prefix names; blocks are numbered 1..L in registration (forward) order.
    Parameters before the first block (patch embedding, position embeddings, tokens) get 0, those after
    the last (final norm, classifier) ``L + 1``.
    """
    names = [n for n, _ in model.named_parameters()]
    order, assigned = {}, {}
    for n in names:
        m = re.match(r"^(.*\.\d+)\.", n)
        if m:
            assigned[n] = order.setdefault(m.group(1), len(order) + 1)
    num_blocks = len(order)
    ids, seen_block = {}, False
    for n in names:
        if n in assigned:
            ids[n], seen_block = assigned[n], True
        else:
            ids[n] = num_blocks + 1 if seen_block else 0
    return ids, num_blocks


def layer_decay_scales(model, decay):
    """``{name: decay ** (L + 1 - id)}``: the classifier trains at the full LR, the stem at ``decay ** (L + 1)``."""
    ids, num_blocks = layer_ids(model)
    return {n: decay ** (num_blocks + 1 - i) for n, i in ids.items()}


def enable_recompute(model):
    """Activation checkpointing for every top-level ``*Block`` sub-layer (its activations are recomputed in
    the backward pass); returns how many were wrapped."""
    from paddle.distributed.fleet.utils import recompute

    wrapped = []

    def visit(layer):
        for child in layer.children():
            if type(child).__name__.endswith("Block"):
                forward = child.forward
                child.forward = functools.partial(_recomputed, recompute, forward)
                wrapped.append(child)
            else:
                visit(child)

    visit(model)
    return len(wrapped)


def _recomputed(recompute, forward, *args, **kwargs):
    if not paddle.is_grad_enabled():
        return forward(*args, **kwargs)
    return recompute(forward, *args, **kwargs)
