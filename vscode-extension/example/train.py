"""The editable file: the agent may change this, and only this.

A stand-in for a training run that takes about a second: `score` is lower when LR is near 0.3
and WIDTH near 12. The loop reads the last `score: <number>` line.
"""

import time

LR = 0.5

WIDTH = 8

time.sleep(1.0)  # "training"
score = (LR - 0.3) ** 2 + (WIDTH - 12) ** 2 / 100
print("training...")
print("---")
print(f"score: {score:.6f}")
