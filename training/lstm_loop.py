"""The explicit LSTM layer's time loop with hand-written backpropagation through time.

Autograd over a Python loop records ~20 small nodes per step (and each `proj[:, t]` slice's backward writes a
zero tensor of the whole sequence), which made a peephole LSTM run 20x slower than the fused `nn.LSTM`. Here the
forward loop runs without autograd and keeps the gate activations; the backward pass (the chain rule of the
equations in `training/cells.py`, written out) turns them into the gradients. The runs are small and bound by
the cost of each operation's call, not by arithmetic, so both loops keep the work per step to few operations:
the forward loop computes the input and forget gates in one call (their peepholes both see c(t-1)), and every
factor of the backward recursion that does not depend on the incoming gradient is computed for all steps at
once before the loop, which leaves five operations per step. The gradients of the recurrent weight and the
peepholes are one reduction over all steps at the end. (`torch.jit.script` measured only ~10% faster than plain
Python and is deprecated in torch 2.13, so the loops stay Python.)

`proj` (B, T, G*H) is the input projection W x(t) + b of every step, computed by the caller in one matmul
(autograd carries it to W, b and x); gates are stacked (i, f, c~, o), or (f, c~, o) when coupled (i = 1 - f).
`peep` (3, H) holds p_i, p_f, p_o; a layer without peepholes passes zeros and ignores their gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _forward(proj: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, peep: Tensor,
             coupled: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Time-major: returns hs (T+1, B, H) (h(0) first), cs (T+1, B, H), the input-side gates (T, B, K, H)
    (K = 1: f when coupled, K = 2: i, f), c~ and o, each (T, B, H)."""
    B, H = h.shape
    k = 1 if coupled else 2  # the gates whose peepholes see c(t-1)
    p_in, p_o = peep[2 - k : 2], peep[2]  # (K, H): p_f, or p_i and p_f
    hs, cs, gates, gg, oo = [h], [c], [], [], []
    w_t = w_hh.t()  # (H, G*H)
    for p_t in proj.unbind(1):  # not proj[:, t]: see the module's docstring
        z = torch.addmm(p_t, h, w_t)  # (B, G*H)
        a = torch.sigmoid(torch.addcmul(z[:, : k * H].view(B, k, H), p_in, c[:, None]))  # (B, K, H)
        g = torch.tanh(z[:, k * H : (k + 1) * H])
        f = a[:, -1]
        c = torch.addcmul(g, f, c - g) if coupled else torch.addcmul(f * c, a[:, 0], g)  # (1 - f) g or i g
        o = torch.sigmoid(torch.addcmul(z[:, (k + 1) * H :], p_o, c))  # the output gate sees the new c
        h = o * torch.tanh(c)
        hs.append(h)
        cs.append(c)
        gates.append(a)
        gg.append(g)
        oo.append(o)
    return torch.stack(hs), torch.stack(cs), torch.stack(gates), torch.stack(gg), torch.stack(oo)


def _backward(dy: Tensor, dh: Tensor, dc: Tensor, hs: Tensor, cs: Tensor, gates: Tensor, g: Tensor, o: Tensor,
              w_hh: Tensor, peep: Tensor, coupled: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Time-major like `_forward`: dy (T, B, H), the loss's gradient at every output h(t); dh, dc (B, H): at the
    final state. Returns the gradients of proj (B, T, G*H), h(0), c(0), w_hh (G*H, H) and peep (3, H).

    Per step, with dh and dc the gradients reaching h(t) and c(t) from later steps:
    dh += dy(t); dz_o = dh * s_o; dc += dh * k_c; dz_g = dc * s_g for the gates g in (i, f, c~), then
    dc(t-1) = dc * m and dh(t-1) = dz @ R. The factors s_o = o' tanh(c), k_c = o (1 - tanh^2 c) + s_o p_o,
    s_g = (dgate / dz_g) (dc(t) / dgate) and m = f + s_i p_i + s_f p_f do not depend on the incoming gradient:
    they are computed for all steps at once, first.
    """
    T, B, H = dy.shape
    c_prev, c, f = cs[:-1], cs[1:], gates[:, :, -1]  # (T, B, H)
    tc = torch.tanh(c)
    s_o = tc * o * (1 - o)  # dz_o / dh
    k_c = o * (1 - tc * tc) + s_o * peep[2]  # dc(t) / dh(t), through tanh(c) and the output gate's peephole
    if coupled:  # c = f c_prev + (1 - f) g
        s = torch.stack([(c_prev - g) * f * (1 - f), (1 - f) * (1 - g * g)], 2)  # (T, B, 2, H): f, c~
        m = f + s[:, :, 0] * peep[1]
    else:
        i = gates[:, :, 0]
        s = torch.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], 2)  # (T, B, 3, H): i, f, c~
        m = f + s[:, :, 0] * peep[0] + s[:, :, 1] * peep[1]
    n = s.shape[2]
    w_in, w_o = w_hh[: n * H], w_hh[n * H :]  # the rows of the gates fed by dc, of the output gate
    dz_in, dz_o = torch.empty_like(s), torch.empty_like(s_o)  # (T, B, n, H), (T, B, H)
    for t in range(T - 1, -1, -1):
        dh = dh + dy[t]
        dc = torch.addcmul(dc, dh, k_c[t])
        torch.mul(dc[:, None], s[t], out=dz_in[t])
        torch.mul(dh, s_o[t], out=dz_o[t])
        dc = dc * m[t]
        dh = torch.addmm(dz_o[t] @ w_o, dz_in[t].view(B, n * H), w_in)  # (B, H)
    d_proj = torch.cat([dz_in.flatten(2), dz_o], 2)  # (T, B, G*H)
    d_w = d_proj.flatten(0, 1).t() @ hs[:-1].flatten(0, 1)  # (G*H, H): sum over t of dz(t)^T h(t-1)
    d_pf = (dz_in[:, :, n - 2] * c_prev).sum((0, 1))
    d_pi = torch.zeros_like(peep[0]) if coupled else (dz_in[:, :, 0] * c_prev).sum((0, 1))
    d_po = (dz_o * c).sum((0, 1))
    return d_proj.transpose(0, 1), dh, dc, d_w, torch.stack([d_pi, d_pf, d_po])


class LSTMLoop(torch.autograd.Function):
    """y, h(T), c(T) = loop(proj, h(0), c(0), w_hh, peep) with the backward pass above."""

    @staticmethod
    def forward(ctx: Any, proj: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, peep: Tensor,  # type: ignore[override]
                coupled: bool) -> tuple[Tensor, Tensor, Tensor]:
        hs, cs, gates, g, o = _forward(proj, h, c, w_hh, peep, coupled)
        ctx.save_for_backward(hs, cs, gates, g, o, w_hh, peep)
        ctx.coupled = coupled
        return hs[1:].transpose(0, 1), hs[-1], cs[-1]  # y (B, T, H), h(T), c(T)

    @staticmethod
    def backward(ctx: Any, dy: Tensor | None, dh: Tensor | None,  # type: ignore[override]
                 dc: Tensor | None) -> tuple[Tensor | None, ...]:
        hs, cs, gates, g, o, w_hh, peep = ctx.saved_tensors
        zero = torch.zeros_like(hs[0])
        dy = torch.zeros_like(hs[1:]) if dy is None else dy.transpose(0, 1).contiguous()  # (T, B, H)
        d_proj, d_h, d_c, d_w, d_p = _backward(dy, zero if dh is None else dh,
                                               zero if dc is None else dc, hs, cs, gates, g, o, w_hh, peep,
                                               ctx.coupled)
        return d_proj, d_h, d_c, d_w, d_p, None


def lstm_loop(proj: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, peep: Tensor,
              coupled: bool) -> tuple[Tensor, Tensor, Tensor]:
    """proj (B, T, G*H), h and c (B, H), w_hh (G*H, H), peep (3, H). Returns y (B, T, H), h(T), c(T)."""
    out: tuple[Tensor, Tensor, Tensor] = LSTMLoop.apply(proj, h, c, w_hh, peep, coupled)
    return out
