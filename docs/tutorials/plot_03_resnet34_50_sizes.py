"""
ResNet-34 and -50 at 224 and 512; the max-pool padding; basic block vs bottleneck
==================================================================================

Three questions learners work out by hand, answered by :func:`npresnet.summary.summarize`
from the real models: how the stages' shapes change with the input size, what the stem's
max-pool padding changes, and what a basic block costs against a bottleneck.
"""

# %%
# Stages at 224 and at 512
# ------------------------
# The network is fully convolutional up to the global average pool, so a 512×512 input gives
# stage outputs ``512 / 4 = 128`` down to ``512 / 32 = 16`` (the stem and the pool divide by 4,
# stages 2–4 by 2 each), and the MACs grow with the pixels: ``(512/224)² ≈ 5.2×``. The
# parameters do not change.
from npresnet.summary import summarize

for arch in ("resnet34", "resnet50"):
    for size in (224, 512):
        s = summarize(arch, input_size=size, depth=1)
        stages = {row.name: row.output_shape for row in s.layers if row.name.startswith("layer")}
        print(f"{arch} at {size}: {s.total_params:,} params, {s.total_macs / 1e9:.2f} G MACs")
        print("   ", ", ".join(f"{name} {c}@{h}×{w}" for name, (c, h, w) in stages.items()))

# %%
ratio = summarize("resnet50", input_size=512).total_macs / summarize("resnet50", input_size=224).total_macs
print(f"ResNet-50, MACs at 512 / at 224: {ratio:.2f} (pixels: {(512 / 224) ** 2:.2f})")

# %%
# The stem's max-pool padding
# ---------------------------
# torchvision pools with ``MaxPool2d(3, stride=2, padding=1)``: 112 → 56. Many re-implementations
# leave the padding out (``maxpool_padding=0``), and then ``floor((112 − 3) / 2) + 1 = 55``.
# Layer1 keeps 55×55; from layer2 on, the padded stride-2 convolutions round back to the usual
# sizes (``floor((55 + 2 − 3) / 2) + 1 = 28``). At 512 the same happens: 127 instead of 128.
for size in (224, 512):
    for padding in (1, 0):
        s = summarize("resnet50", input_size=size, depth=1, maxpool_padding=padding)
        shapes = [f"{row.name} {row.output_shape[1]}×{row.output_shape[2]}" for row in s.layers[3:8]]
        print(f"{size}, maxpool_padding={padding}:", ", ".join(shapes), f"({s.total_macs / 1e9:.2f} G MACs)")

# %%
# Basic block against bottleneck
# -------------------------------
# ResNet-34's basic block is two 3×3 convolutions at the stage's width; ResNet-50's bottleneck
# is 1×1 (reduce to a quarter), 3×3, 1×1 (expand 4×). The second block of layer1, side by side:
basic = summarize("resnet34", depth=2)
bottleneck = summarize("resnet50", depth=2)
for s in (basic, bottleneck):
    row = next(r for r in s.layers if r.name == "layer1.1")
    c, h, w = row.output_shape
    print(f"{s.arch}: {row.type:<11} {c}@{h}×{w}  {row.params:>7,} params  {row.macs / 1e6:7.2f} M MACs")

# %%
# The bottleneck carries 4× the channels for slightly fewer parameters and MACs. By hand, with
# ``C = 64`` channels at the block's narrow width (batch-norm parameters left out):
#
# - basic block: ``2 · (3·3·C·C) = 18·C² = 73,728`` weights;
# - bottleneck: ``4C·C + 3·3·C·C + C·4C = 17·C² = 69,632`` weights.
C = 64
print(2 * 9 * C * C, 4 * C * C + 9 * C * C + 4 * C * C)

# %%
# The bottleneck's three convolutions, one by one (its 3×3 runs on 64 channels, not 256):
rows = [r for r in summarize("resnet50").layers if r.name.startswith("layer1.1.conv")]
for r in rows:
    print(f"{r.name:<16} {r.type:<18} {r.params:>7,} params  {r.macs / 1e6:7.2f} M MACs")

# %%
# MACs per stage
# --------------
import matplotlib.pyplot as plt
import numpy as np

fig, ax = plt.subplots(figsize=(8, 3.5))
names = ["conv1", "layer1", "layer2", "layer3", "layer4"]
for k, (arch, size) in enumerate([("resnet34", 224), ("resnet50", 224), ("resnet34", 512), ("resnet50", 512)]):
    s = summarize(arch, input_size=size, depth=1)
    macs = {row.name: row.macs for row in s.layers}
    ax.bar(np.arange(5) + 0.2 * k - 0.3, [macs[n] / 1e9 for n in names], width=0.2, label=f"{arch} at {size}")
ax.set_xticks(range(5), names)
ax.set_ylabel("G MACs")
ax.legend()
ax.set_title("MACs per stage")
fig.tight_layout()
