"""The explicit LSTM layer's time loop with hand-written backpropagation through time.

Autograd over a Python loop records ~20 small nodes per step (and each `proj[:, t]` slice's backward writes a
zero tensor of the whole sequence), which made a peephole LSTM run 20x slower than the fused `nn.LSTM`. Here the
forward loop runs without autograd and keeps the gate activations; the backward loop (the chain rule of the
equations in `training/cells.py`, written out) turns them into the gradients, and the gradients of the recurrent
weight and the peepholes are one reduction over all steps at the end. (`torch.jit.script` of both loops measured
only ~10% faster and is deprecated in torch 2.13, so the loops stay Python.)

`proj` (B, T, G*H) is the input projection W x(t) + b of every step, computed by the caller in one matmul
(autograd carries it to W, b and x); gates are stacked (i, f, c~, o), or (f, c~, o) when coupled (i = 1 - f).
`peep` (3, H) holds p_i, p_f, p_o; a layer without peepholes passes zeros and ignores their gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _forward(proj: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, peep: Tensor,
             coupled: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns hs (B, T+1, H) (h(0) first), cs (B, T+1, H), and the activations i, f, g, o, each (B, T, H)
    (i has no columns when coupled)."""
    H = h.shape[1]
    hs, cs = [h], [c]
    ii: list[Tensor] = []
    ff: list[Tensor] = []
    gg: list[Tensor] = []
    oo: list[Tensor] = []
    w_t = w_hh.t()  # (H, G*H)
    for t in range(proj.shape[1]):
        z = torch.addmm(proj[:, t], h, w_t)  # (B, G*H)
        if coupled:
            f = torch.sigmoid(torch.addcmul(z[:, :H], peep[1], c))  # (B, H)
            g = torch.tanh(z[:, H : 2 * H])
            c = torch.addcmul(g, f, c - g)  # f * c + (1 - f) * g
            z_o = z[:, 2 * H :]
        else:
            i = torch.sigmoid(torch.addcmul(z[:, :H], peep[0], c))
            f = torch.sigmoid(torch.addcmul(z[:, H : 2 * H], peep[1], c))
            g = torch.tanh(z[:, 2 * H : 3 * H])
            c = torch.addcmul(f * c, i, g)
            z_o = z[:, 3 * H :]
            ii.append(i)
        o = torch.sigmoid(torch.addcmul(z_o, peep[2], c))  # the output gate sees the new c
        h = o * torch.tanh(c)
        hs.append(h)
        cs.append(c)
        ff.append(f)
        gg.append(g)
        oo.append(o)
    i_all = torch.stack(ii, 1) if len(ii) > 0 else proj[:, :, :0]
    return torch.stack(hs, 1), torch.stack(cs, 1), i_all, torch.stack(ff, 1), torch.stack(gg, 1), torch.stack(oo, 1)


def _backward(dy: Tensor, dh: Tensor, dc: Tensor, hs: Tensor, cs: Tensor, i_all: Tensor, f_all: Tensor,
              g_all: Tensor, o_all: Tensor, w_hh: Tensor, peep: Tensor,
              coupled: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """dy (B, T, H): the loss's gradient at every output h(t); dh, dc (B, H): at the final state. Returns the
    gradients of proj (B, T, G*H), h(0), c(0), w_hh (G*H, H) and peep (3, H)."""
    dzs: list[Tensor] = []
    for t in range(dy.shape[1] - 1, -1, -1):
        c_prev, c, f, g, o = cs[:, t], cs[:, t + 1], f_all[:, t], g_all[:, t], o_all[:, t]
        tc = torch.tanh(c)
        dh = dh + dy[:, t]
        dz_o = dh * tc * o * (1 - o)
        dc = dc + dh * o * (1 - tc * tc) + dz_o * peep[2]
        if coupled:
            dz_f = dc * (c_prev - g) * f * (1 - f)
            dz_g = dc * (1 - f) * (1 - g * g)
            dz = torch.cat([dz_f, dz_g, dz_o], 1)  # (B, 3H)
            dc_peep = dz_f * peep[1]
        else:
            i = i_all[:, t]
            dz_i = dc * g * i * (1 - i)
            dz_f = dc * c_prev * f * (1 - f)
            dz_g = dc * i * (1 - g * g)
            dz = torch.cat([dz_i, dz_f, dz_g, dz_o], 1)  # (B, 4H)
            dc_peep = dz_i * peep[0] + dz_f * peep[1]
        dc = dc * f + dc_peep
        dh = dz @ w_hh  # (B, H)
        dzs.append(dz)
    dzs.reverse()
    d_proj = torch.stack(dzs, 1)  # (B, T, G*H)
    d_w = d_proj.flatten(0, 1).t() @ hs[:, :-1].flatten(0, 1)  # (G*H, H): sum over t of dz(t)^T h(t-1)
    H = dh.shape[1]
    dz_i, dz_f = (d_proj[:, :, :0], d_proj[:, :, :H]) if coupled else (d_proj[:, :, :H], d_proj[:, :, H : 2 * H])
    c_prev = cs[:, :-1]  # (B, T, H)
    d_pi = (dz_i * c_prev).sum((0, 1)) if not coupled else torch.zeros_like(peep[0])
    d_po = (d_proj[:, :, -H:] * cs[:, 1:]).sum((0, 1))
    return d_proj, dh, dc, d_w, torch.stack([d_pi, (dz_f * c_prev).sum((0, 1)), d_po])


class LSTMLoop(torch.autograd.Function):
    """y, h(T), c(T) = loop(proj, h(0), c(0), w_hh, peep) with the backward pass above."""

    @staticmethod
    def forward(ctx: Any, proj: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, peep: Tensor,  # type: ignore[override]
                coupled: bool) -> tuple[Tensor, Tensor, Tensor]:
        hs, cs, i, f, g, o = _forward(proj, h, c, w_hh, peep, coupled)
        ctx.save_for_backward(hs, cs, i, f, g, o, w_hh, peep)
        ctx.coupled = coupled
        return hs[:, 1:], hs[:, -1], cs[:, -1]  # y (B, T, H), h(T), c(T)

    @staticmethod
    def backward(ctx: Any, dy: Tensor | None, dh: Tensor | None,  # type: ignore[override]
                 dc: Tensor | None) -> tuple[Tensor | None, ...]:
        hs, cs, i, f, g, o, w_hh, peep = ctx.saved_tensors
        zero = torch.zeros_like(hs[:, 0])
        dy = torch.zeros_like(hs[:, 1:]) if dy is None else dy
        d_proj, d_h, d_c, d_w, d_p = _backward(dy.contiguous(), zero if dh is None else dh,
                                               zero if dc is None else dc, hs, cs, i, f, g, o, w_hh, peep,
                                               ctx.coupled)
        return d_proj, d_h, d_c, d_w, d_p, None


def lstm_loop(proj: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, peep: Tensor,
              coupled: bool) -> tuple[Tensor, Tensor, Tensor]:
    """proj (B, T, G*H), h and c (B, H), w_hh (G*H, H), peep (3, H). Returns y (B, T, H), h(T), c(T)."""
    out: tuple[Tensor, Tensor, Tensor] = LSTMLoop.apply(proj, h, c, w_hh, peep, coupled)
    return out
