"""Stage-count conditioning of a synthesis transform that folds into its weights (training world only).

One realistic synthesis serves every stage-only level, but the texture it has to invent depends on how
coarse the codes are: one stage needs the most, four the least. :class:`StageFilm` gives the network
the stage count ``k`` of each sample as a per-``k`` affine map of every convolution's output channels,
``y_c -> scale[k, c] * y_c + shift[k, c]`` (FiLM), initialised to the identity.

Because the map follows a convolution directly, it folds into that convolution's weights:
``scale * (W * x + b) + shift = (scale W) * x + (scale b + shift)``; for each ``k`` the conditioned
network is the same graph with other weights. :func:`folded_tensors` writes those as per-level factors
the runtime applies to the realistic weights (``w_k = w * mul + add``, :mod:`vqz.codec.realism`), so the
light runtime needs no new graph and no knowledge of the layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["StageFilm", "folded_tensors"]


class StageFilm(nn.Module):
    """Per-stage-count scale and shift of the output channels of every ``Conv2d`` / ``ConvTranspose2d``
    of ``network`` (installed as forward hooks). Set :attr:`stages` ((N,) int, values 1..``levels``) before
    each forward; ``None`` leaves the network unconditioned (identity)."""

    def __init__(self, network: nn.Module, levels: int) -> None:
        super().__init__()
        self.levels = levels
        self.stages: Tensor | None = None
        self.names: list[str] = []
        self.scale = nn.ParameterDict()
        self.shift = nn.ParameterDict()
        self._handles = []
        for name, module in network.named_modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                key = name.replace(".", "_")
                self.names.append(name)
                self.scale[key] = nn.Parameter(torch.ones(levels, module.out_channels))
                self.shift[key] = nn.Parameter(torch.zeros(levels, module.out_channels))
                self._handles.append(module.register_forward_hook(self._hook(key)))
        if not self.names:
            raise ValueError("the network has no convolution to condition")

    def _hook(self, key: str):
        def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
            if self.stages is None:
                return output
            index = (self.stages.clamp(1, self.levels) - 1).to(output.device)
            scale = self.scale[key][index][:, :, None, None].to(output.dtype)
            shift = self.shift[key][index][:, :, None, None].to(output.dtype)
            return output * scale + shift
        return hook


@torch.no_grad()
def folded_tensors(film: StageFilm, network: nn.Module, prefix: str = "g_s.") -> dict[str, Tensor]:
    """The per-level factors of ``film`` on ``network``'s parameters: ``level<k>.mul.<prefix><param>``
    (broadcastable to the parameter) and, for biases, ``level<k>.add.<prefix><param>``, k = 1..levels,
    such that the level-k network's parameter is ``param * mul + add``."""
    modules = dict(network.named_modules())
    out: dict[str, Tensor] = {}
    for name in film.names:
        module, key = modules[name], name.replace(".", "_")
        for k in range(1, film.levels + 1):
            scale, shift = film.scale[key][k - 1].detach().float(), film.shift[key][k - 1].detach().float()
            if isinstance(module, nn.ConvTranspose2d):  # weight (in, out, kh, kw)
                mul = scale.reshape(1, -1, 1, 1)
            else:  # Conv2d weight (out, in, kh, kw)
                mul = scale.reshape(-1, 1, 1, 1)
            out[f"level{k}.mul.{prefix}{name}.weight"] = mul.contiguous()
            if module.bias is None:
                raise ValueError(f"{name} has no bias: a shift cannot fold into it")
            out[f"level{k}.mul.{prefix}{name}.bias"] = scale.contiguous()
            out[f"level{k}.add.{prefix}{name}.bias"] = shift.contiguous()
    return out
