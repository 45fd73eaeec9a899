"""An independent PyTorch definition of SoundNet-8/5 and safetensors I/O with numpy alone.

Written from the authors' released description (../shared/README.md, section 1), not from the
C++ code: it is the reference the C++ library is checked against.
"""
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from safetensors_np import read_safetensors, write_safetensors  # noqa: F401

# (out, kernel, stride, pad, pool) per block; the last row is the two-headed output.
ARCHS = {
    "soundnet8": [(16, 64, 2, 32, 8), (32, 32, 2, 16, 8), (64, 16, 2, 8, None), (128, 8, 2, 4, None),
                  (256, 4, 2, 2, 4), (512, 4, 2, 2, None), (1024, 4, 2, 2, None), ("head", 8, 2, 0, None)],
    "soundnet5": [(32, 64, 2, 32, 8), (64, 32, 2, 16, 8), (128, 16, 2, 8, 8), (256, 8, 2, 4, None),
                  ("head", 16, 12, 4, None)],
}


class SoundNet(nn.Module):
    """Blocks conv{i} -> bn{i} -> ReLU (-> max-pool); last: conv{n}_objects / conv{n}_scenes."""

    def __init__(self, arch="soundnet8", objects=1000, scenes=401):
        super().__init__()
        self.arch, self.spec = arch, ARCHS[arch]
        cin = 1
        for i, (out, k, s, p, pool) in enumerate(self.spec, start=1):
            if out == "head":
                self.head_name = f"conv{i}"
                setattr(self, f"conv{i}_objects", nn.Conv1d(cin, objects, k, s, p))
                setattr(self, f"conv{i}_scenes", nn.Conv1d(cin, scenes, k, s, p))
            else:
                setattr(self, f"conv{i}", nn.Conv1d(cin, out, k, s, p))
                setattr(self, f"bn{i}", nn.BatchNorm1d(out, eps=1e-5, momentum=0.1))
                cin = out

    def forward(self, x, flips=None):
        """Returns a dict of every read-out point, named as the C++ library names them.

        flips: optional {"bn{i}": bool mask, "pool{i}": bool mask}: the backward pass routes
        those ReLU inputs / max-pool windows the other way (see kink_flips)."""
        taps = {}
        flips = flips or {}
        for i, (out, k, s, p, pool) in enumerate(self.spec, start=1):
            if out == "head":
                taps[f"conv{i}_objects"] = getattr(self, f"conv{i}_objects")(x)
                taps[f"conv{i}_scenes"] = getattr(self, f"conv{i}_scenes")(x)
                break
            x = getattr(self, f"conv{i}")(x)
            taps[f"conv{i}_linear"] = x
            x = getattr(self, f"bn{i}")(x)
            taps[f"bn{i}"] = x
            x = FlipReLU.apply(x, flips[f"bn{i}"]) if f"bn{i}" in flips else F.relu(x)
            taps[f"conv{i}"] = x
            if pool:
                if f"pool{i}" in flips:
                    x = FlipMaxPool.apply(x, pool, flips[f"pool{i}"])
                else:
                    x = F.max_pool1d(x, pool, pool)  # floor mode
                taps[f"pool{i}"] = x
        return taps

    def paper_init(self, generator):
        """Conv weights N(0, 0.01), biases 0, BN gamma N(1, 0.02), beta 0."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("bn") and name.endswith(".weight"):
                    p.copy_(torch.normal(1.0, 0.02, p.shape, generator=generator))
                elif name.endswith(".weight"):
                    p.copy_(torch.normal(0.0, 0.01, p.shape, generator=generator))
                else:
                    p.zero_()

    def state_numpy(self):
        return {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()
                if not k.endswith("num_batches_tracked")}

    def load_numpy(self, tensors):
        sd = self.state_dict()
        for k in sd:
            if k.endswith("num_batches_tracked"):
                continue
            sd[k].copy_(torch.from_numpy(np.asarray(tensors[k], dtype=np.float64)))


class FlipReLU(torch.autograd.Function):
    """ReLU whose backward lets the gradient through where (x > 0) XOR flip."""

    @staticmethod
    def forward(ctx, x, flip):
        ctx.save_for_backward(x, flip)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        x, flip = ctx.saved_tensors
        return g * ((x > 0) ^ flip).to(g.dtype), None


class FlipMaxPool(torch.autograd.Function):
    """Floor-mode max-pool (kernel = stride) whose backward routes flipped windows to their
    second-largest input instead of the largest."""

    @staticmethod
    def forward(ctx, x, k, flip):
        n, c, length = x.shape
        windows = x[:, :, : (length // k) * k].reshape(n, c, length // k, k)
        top = windows.topk(2, dim=-1)
        pick = torch.where(flip, top.indices[..., 1], top.indices[..., 0])
        pos = pick + torch.arange(length // k, device=x.device)[None, None, :] * k
        ctx.save_for_backward(pos)
        ctx.length = length
        return top.values[..., 0]

    @staticmethod
    def backward(ctx, g):
        (pos,) = ctx.saved_tensors
        n, c, _ = g.shape
        dx = torch.zeros(n, c, ctx.length, dtype=g.dtype)
        dx.scatter_add_(2, pos, g)
        return dx, None, None


def kink_flips(taps, spec, tau):
    """Ambiguous kinks of a forward pass: ReLU inputs with |x| < tau * rms and max-pool windows
    whose two largest inputs differ by less than tau * rms. Their side is not determined at
    float32 precision, so a float32 run may route the gradient either way there."""
    flips = {}
    for i, (out, k, s, p, pool) in enumerate(spec, start=1):
        if out == "head":
            break
        x = taps[f"bn{i}"].detach()
        rms = x.pow(2).mean().sqrt()
        flips[f"bn{i}"] = x.abs() < tau * rms
        if pool:
            y = taps[f"conv{i}"].detach()
            n, c, length = y.shape
            top = y[:, :, : (length // pool) * pool].reshape(n, c, length // pool, pool).topk(2, dim=-1).values
            flips[f"pool{i}"] = (top[..., 0] - top[..., 1] < tau * y.pow(2).mean().sqrt()) & (top[..., 0] > 0)
    return flips


def kl_loss(taps, head, t_obj, t_scn):
    """Sum over heads of the mean over batch and time of KL(target || softmax(logits))."""
    total = 0.0
    for logits, target in ((taps[f"{head}_objects"], t_obj), (taps[f"{head}_scenes"], t_scn)):
        n, _, t = logits.shape
        total = total + F.kl_div(F.log_softmax(logits, dim=1), target, reduction="sum") / (n * t)
    return total
