"""Exponential moving average of a model's weights (``--model-ema``)."""
import paddle


class ModelEma:
    """``ema = decay * ema + (1 - decay) * weight`` after every optimizer step, in float32.

    The average lives in a second model of the same architecture (built by the caller), so it can be
    evaluated and saved like the raw one. Buffers (none of the four families has running statistics)
    are copied.

    Args:
        model: The trained model.
        shadow: A model of the same architecture; its weights are set to ``model``'s.
        decay: Weight of the old average per update, in ``[0, 1)``.
    """

    def __init__(self, model, shadow, decay):
        self.decay = float(decay)
        self.module = shadow
        self.module.set_state_dict(model.state_dict())
        self.module.eval()
        for p in self.module.parameters():
            p.stop_gradient = True

    @paddle.no_grad()
    def update(self, model):
        """One EMA step towards ``model``'s current weights."""
        params = dict(model.named_parameters())
        for name, p in self.module.named_parameters():
            src = params[name].astype("float32") if params[name].dtype != p.dtype else params[name]
            p.set_value(p * self.decay + src * (1.0 - self.decay))
        buffers = dict(model.named_buffers())
        for name, b in self.module.named_buffers():
            b.set_value(buffers[name])

    def state_dict(self):
        return self.module.state_dict()

    def set_state_dict(self, state):
        self.module.set_state_dict(state)
