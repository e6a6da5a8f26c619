"""A small character-level GPT, trained for a fixed time budget. EDITABLE: the loop changes this.

Run: RATCHET_TIME_BUDGET=30 python train.py   (seconds; 60 when unset)
It trains until the budget, less the time evaluation will take, is spent; then it measures
val_bpb with prepare.evaluate_bpb and prints the summary the loop reads.
"""

# ruff: noqa: E402 (the clock starts before torch is imported: the budget covers it)
import time

T_START = time.time()

import math
import os

import prepare
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# The knobs: plain module-level UPPER_CASE numbers, the ones the offline agent perturbs. As
# shipped, the learning rate is one a person would raise for a model this small trained for
# seconds, not hours: there is a real gain to find, measured, not planted in the metric.

LEARNING_RATE = 1e-3
WARMUP_STEPS = 50
BATCH_SIZE = 32
BLOCK_SIZE = 64
N_LAYER = 2
N_EMBD = 64

# The details, in lower case so the offline agent leaves them alone (an LLM agent, or you,
# may change anything in this file).
heads = 4
mlp_ratio = 4
dropout = 0.0
min_lr_frac = 0.1
weight_decay = 0.01
betas = (0.9, 0.95)
grad_clip = 1.0
init_std = 0.02

# ---------------------------------------------------------------------------------------------
# The model


def count(value, minimum):
    """A size from a hyperparameter that an edit may have made fractional or too small."""
    return max(minimum, round(value))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, mlp_ratio, dropout):
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.proj = nn.Linear(n_embd, n_embd, bias=False)
        self.ln2 = nn.LayerNorm(n_embd)
        hidden = count(mlp_ratio * n_embd, 1)
        self.fc = nn.Linear(n_embd, hidden, bias=False)
        self.fc_out = nn.Linear(hidden, n_embd, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))
        x = x + self.drop(self.fc_out(F.gelu(self.fc(self.ln2(x)))))
        return x


class GPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, mlp_ratio, dropout):
        super().__init__()
        self.block_size = block_size
        self.tok = nn.Embedding(vocab_size, n_embd)
        self.pos = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(n_embd, n_head, mlp_ratio, dropout) for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = self.tok.weight  # weight tying
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = init_std
                if name.endswith(("proj.weight", "fc_out.weight")):
                    std = init_std / math.sqrt(2 * max(1, n_layer))
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx):
        t = idx.size(1)
        x = self.drop(self.tok(idx) + self.pos(torch.arange(t, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


# ---------------------------------------------------------------------------------------------
# Setup


def pick_device():
    if torch.cuda.is_available():  # honours CUDA_VISIBLE_DEVICES
        return torch.device("cuda")
    # Half the cores: a thread that waits for a busy core stalls all the others at every op, and
    # experiments often share the machine. RATCHET_THREADS overrides.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = int(os.environ.get("RATCHET_THREADS") or max(1, min((cores or 1) // 2, 8)))
    torch.set_num_threads(threads)
    return torch.device("cpu")


device = pick_device()
torch.manual_seed(42)  # the seed is fixed on purpose: a lucky seed is not an improvement
generator = torch.Generator().manual_seed(42)

n_head = count(heads, 1)
n_embd = max(n_head, count(N_EMBD, 1) // n_head * n_head)  # a multiple of the head count
n_layer = count(N_LAYER, 1)
block_size = count(BLOCK_SIZE, 2)
batch_size = count(BATCH_SIZE, 1)
warmup_steps = count(WARMUP_STEPS, 0)

model = GPT(prepare.VOCAB_SIZE, block_size, n_layer, n_head, n_embd, mlp_ratio, dropout)
model.to(device)
num_params = sum(p.numel() for p in model.parameters())

decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
optimizer = torch.optim.AdamW(
    [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
    lr=LEARNING_RATE,
    betas=betas,
)


def lr_at(step, progress):
    """Linear warmup over steps, then cosine decay over the fraction of the budget spent."""
    if step < warmup_steps:
        return LEARNING_RATE * (step + 1) / warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    return LEARNING_RATE * (
        min_lr_frac + (1 - min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))
    )


# ---------------------------------------------------------------------------------------------
# Training: until the budget, less what evaluation and the exit will take, is spent

budget = prepare.TIME_BUDGET
val_tokens = prepare.VAL_CHARS
t_train = time.time()
step = 0
step_seconds = None  # a running estimate of the seconds per training step
train_loss = float("nan")
model.train()
while True:
    t0 = time.time()
    if step_seconds is not None:
        # a forward pass costs about a third of a training step, per token
        eval_seconds = 1.5 * step_seconds / 3 * val_tokens / (batch_size * block_size) + 0.5
        train_end = T_START + budget - eval_seconds - 1.0
        if t0 >= train_end:
            break
        progress = (t0 - t_train) / max(1e-6, train_end - t_train)
    else:
        progress = 0.0
    lr = lr_at(step, progress)
    for group in optimizer.param_groups:
        group["lr"] = lr
    x, y = prepare.get_batch("train", batch_size, block_size, generator, device)
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_loss = loss.item()
    if not math.isfinite(train_loss):
        print(f"step {step}: loss is {train_loss}, giving up")
        raise SystemExit(1)
    dt = time.time() - t0
    if step >= 2:  # the first steps are slow (warm-up of kernels and caches)
        step_seconds = dt if step_seconds is None else 0.9 * step_seconds + 0.1 * dt
    if step % 100 == 0:
        print(
            f"step {step:5d} | loss {train_loss:.4f} | lr {lr:.2e} | {dt * 1000:.0f} ms", flush=True
        )
    step += 1
    if step_seconds is None and time.time() - T_START > budget * 0.5:
        break  # a step slower than half the budget: stop and evaluate what there is

training_seconds = time.time() - t_train
val_bpb = prepare.evaluate_bpb(model, block_size, device)
peak_vram_mb = torch.cuda.max_memory_allocated() / 1024**2 if device.type == "cuda" else 0.0

print("---")
print(f"val_bpb:          {val_bpb:.6f}")
print(f"training_seconds: {training_seconds:.1f}")
print(f"total_seconds:    {time.time() - T_START:.1f}")
print(f"peak_vram_mb:     {peak_vram_mb:.1f}")
print(f"num_steps:        {step}")
print(f"num_params_M:     {num_params / 1e6:.2f}")
