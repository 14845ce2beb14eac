"""Transformer feed-forward block."""
import paddle.nn as nn


class Mlp(nn.Layer):
    """Two-layer MLP: ``fc1 -> act -> drop -> fc2 -> drop`` (timm's names).

    Args:
        in_features: Input width.
        hidden_features: Hidden width (default ``in_features``).
        out_features: Output width (default ``in_features``).
        act_layer: Activation class (default GELU, exact erf form as PyTorch).
        drop: Dropout after each linear layer.
    """

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        x = self.drop1(self.act(self.fc1(x)))
        return self.drop2(self.fc2(x))
