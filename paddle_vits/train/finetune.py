"""Fine-tuning helpers applied from the training side: freezing, layer-wise LR decay, recompute."""
import functools

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


def _block_key(name):
    """``blocks.3`` for ``blocks.3.attn.qkv.weight``: the shortest prefix ending in an index under a ``*block*``
    container (``blocks``, ``blocks_token_only``, ``layers.1.blocks``, ``block2``), else ``None``."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        if parts[i].isdigit() and "block" in parts[i - 1].lower():
            return ".".join(parts[:i + 1])
    return None


def layer_ids(model):
    """Depth of every parameter for layer-wise LR decay: ``{name: id}`` and the number of blocks ``L``.

    Blocks (see :func:`_block_key`) are numbered 1..L in registration (forward) order. Parameters before
    the first block (patch embedding, position embeddings, tokens) get 0, those after the last (final norm,
    classifier) ``L + 1``, those between blocks (a CrossFormer/Wave-ViT stage's downsampling) the id of
    the block before them.
    """
    names = [n for n, _ in model.named_parameters()]
    keys = [_block_key(n) for n in names]
    order = {}
    for k in keys:
        if k is not None:
            order.setdefault(k, len(order) + 1)
    num_blocks = len(order)
    in_block = [i for i, k in enumerate(keys) if k is not None]
    ids, current = {}, 0
    for i, (n, k) in enumerate(zip(names, keys)):
        if k is not None:
            current = order[k]
        ids[n] = current if not in_block or i < in_block[-1] or k is not None else num_blocks + 1
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


def _tensor_list(a):
    return isinstance(a, (list, tuple)) and len(a) > 0 and all(isinstance(t, paddle.Tensor) for t in a)


def _recomputed(recompute, forward, *args, **kwargs):
    if not paddle.is_grad_enabled():
        return forward(*args, **kwargs)
    if not any(_tensor_list(a) for a in args):
        return recompute(forward, *args, **kwargs)
    # CrossViT's multi-scale blocks take and return a list of per-branch tensors; recompute differentiates
    # tensor arguments only: pass the list's tensors one by one and rebuild it inside.
    sizes = [len(a) if _tensor_list(a) else None for a in args]
    flat = [t for a in args for t in (a if _tensor_list(a) else [a])]

    def flat_forward(*tensors):
        it, rebuilt = iter(tensors), []
        for n in sizes:
            rebuilt.append(next(it) if n is None else [next(it) for _ in range(n)])
        out = forward(*rebuilt, **kwargs)
        return tuple(out) if isinstance(out, list) else out

    out = recompute(flat_forward, *flat)
    return list(out) if isinstance(out, tuple) else out
