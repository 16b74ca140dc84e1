"""The dense preset's model in PyTorch, timed like `peer-train bench train` times ours.

d 256, 4 pre-LayerNorm blocks, 4 heads, rotary positions, GELU FFW of width 1024, tied embeddings,
byte vocabulary (256), sequences of 256, batch 16, AdamW. Random byte batches: the speed does not
depend on the data. Prints one JSON object: {"threads": n, "tokens_per_second": x, "steps": s}.

Usage: python3 pytorch_dense.py --threads N [--steps S] [--warmup W]
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

D, LAYERS, HEADS, SEQ, BATCH, VOCAB, HIDDEN = 256, 4, 4, 256, 16, 256, 1024


def rope(x, cos, sin):
    # x: [B, A, S, Dh]; rotate pairs (even, odd) as the tfjs model does.
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


def causal_attention(q, k, v):
    # torch >= 2.0 has the fused kernel; Debian's python3-torch (1.13) does not.
    if hasattr(F, 'scaled_dot_product_attention'):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    s = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    mask = torch.ones(s, s, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(mask, float('-inf')).softmax(dim=-1) @ v


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D, eps=1e-5)
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)
        self.ln2 = nn.LayerNorm(D, eps=1e-5)
        self.up = nn.Linear(D, HIDDEN)
        self.down = nn.Linear(HIDDEN, D)

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        shape = (b, s, HEADS, D // HEADS)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        a = causal_attention(q, k, v)
        x = x + self.proj(a.transpose(1, 2).reshape(b, s, D))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class DenseLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln = nn.LayerNorm(D, eps=1e-5)
        dh = D // HEADS
        inv = 1.0 / (10000 ** (torch.arange(0, dh, 2).float() / dh))
        angles = torch.arange(SEQ).float()[:, None] * inv[None, :]
        self.register_buffer('cos', angles.cos())
        self.register_buffer('sin', angles.sin())

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return self.ln(x) @ self.embed.weight.t()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--threads', type=int, required=True)
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = DenseLM()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    data = torch.randint(0, VOCAB, (args.warmup + args.steps, BATCH, SEQ + 1))
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        batch = data[i]
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    assert math.isfinite(loss.item())
    print(json.dumps({'threads': args.threads, 'tokens_per_second': BATCH * SEQ / median, 'steps': args.steps}))


if __name__ == '__main__':
    main()
