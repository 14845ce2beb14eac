"""paddle.hub entry points: one per registered model.

    import paddle
    paddle.hub.list(REPO_DIR, source="local")                   # every model name
    print(paddle.hub.help(REPO_DIR, "cait_xxs_24", source="local"))
    model = paddle.hub.load(REPO_DIR, "cait_xxs_24", source="local", pretrained=True)

``source="github"`` / ``"gitee"`` with ``"<owner>/<repo>[:branch]"`` load a published copy.
Keyword arguments go to :func:`paddle_vits.create_model` (``pretrained=True``, a release
tag or a path; ``num_classes``; ``img_size``, ...).
"""
import paddle_vits as _pv
from paddle_vits import hub as _hub

dependencies = ["paddle", "numpy", "pywt", "safetensors", "tqdm"]


def _entry(name):
    info = _pv.get_model_info(name)
    releases = "; ".join(f"``{w.tag}``: {w.trained_on}" for w in _hub.list_weights(name)) or "none"

    def entry(pretrained=False, **kwargs):
        return _pv.create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    aliases = f" Aliases: {', '.join(info.aliases)}." if info.aliases else ""
    entry.__doc__ = (
        f"{name} ({info.family}): {info.paper}.{aliases}\n\n"
        f"Eval input {info.input_size[1]}x{info.input_size[2]}, crop_pct {info.crop_pct:g}, {info.interpolation}; "
        f"{info.num_params:,} parameters; ImageNet top-1 {info.top1} (released weights).\n"
        f"Released weights: {releases}.\n\n"
        "Args:\n"
        "    pretrained: False, True (the default release, downloaded and cached), a release tag, or a path.\n"
        "    **kwargs: passed to paddle_vits.create_model (num_classes, img_size, drop_path_rate, ...).\n"
    )
    return entry


for _name in _pv.list_models():
    globals()[_name] = _entry(_name)
