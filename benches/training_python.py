"""One epoch of an MLP 784-256-10 on 10,000 rows in PyTorch (CPU), the same configuration as
benches/training.rs: batch 128, shuffled, AdamW(lr=3e-3, weight_decay=1e-4), cross-entropy. Prints the
median of 10 epochs (after one warm-up) in seconds as JSON."""
import json
import os
import time

import torch

torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
torch.manual_seed(0)
n, d, k = 10_000, 784, 10
x = torch.rand(n, d)
y = torch.arange(n) % k
model = torch.nn.Sequential(torch.nn.Linear(d, 256), torch.nn.ReLU(), torch.nn.Linear(256, k))
opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
loss_fn = torch.nn.CrossEntropyLoss()


def epoch():
    perm = torch.randperm(n)
    for i in range(0, n, 128):
        idx = perm[i : i + 128]
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()


epoch()
times = []
for _ in range(10):
    t = time.perf_counter()
    epoch()
    times.append(time.perf_counter() - t)
times.sort()
print(json.dumps({"epoch": times[len(times) // 2], "torch": torch.__version__}))
