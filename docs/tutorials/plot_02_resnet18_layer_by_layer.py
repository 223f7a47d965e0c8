"""
ResNet-18 layer by layer
========================

The per-layer shape table every learner draws by hand, regenerated from the real model by
:func:`npresnet.summary.summarize`: the model's own ``forward`` runs on a shape-only
:class:`npresnet.nn.TensorSpec`, so no weights are needed and no convolution runs.
"""

# %%
# The whole table
# ---------------
# Each row is one layer call: its torchvision name, its type with kernel, stride and padding,
# the output as ``C@H×W``, its parameters and multiply-accumulates, and the receptive field of
# one output element (size / jump, in input pixels).
from npresnet.summary import format_table, summarize

summary = summarize("resnet18", input_size=224)
print(format_table(summary))

# %%
# Stage by stage
# --------------
# ``depth=1`` folds the blocks into their stages. Each stage after the first halves the height and
# width (its first block has stride 2) and doubles the channels, so every stage costs about the
# same number of MACs.
print(format_table(summarize("resnet18", depth=1)))

# %%
# Why "18"
# --------
# The paper counts the layers with weights on the main path: the stem's 7×7 convolution, two
# 3×3 convolutions in each of the 8 basic blocks (2 per stage), and the fully connected layer:
# ``1 + 8·2 + 1 = 18``. The three 1×1 projections on the shortcuts of layer2–4 (``downsample.0``)
# have weights too, but are not on the main path; counted, they make 21 weighted layers.
convs = [row.name for row in summary.layers if row.type.startswith("Conv2d")]
main_path = [name for name in convs if "downsample" not in name]
shortcuts = [name for name in convs if "downsample" in name]
fc = [row.name for row in summary.layers if row.type.startswith("Linear")]
print(len(main_path), "main-path convolutions +", len(fc), "fc =", len(main_path) + len(fc))
print("shortcut projections:", shortcuts)
print("the summary's count:", summary.depth, "as the paper counts;", summary.weighted_layers, "weighted layers")

# %%
# The receptive field grows with depth
# ------------------------------------
# Each 3×3 convolution adds ``2 × jump`` input pixels to the field, and each stride multiplies
# the jump. By layer4 a unit sees 435×435 pixels (padding included), more than the image.
import matplotlib.pyplot as plt

rows = [row for row in summary.layers if row.type.startswith(("Conv2d", "MaxPool2d")) and "downsample" not in row.name]
fig, ax = plt.subplots(figsize=(9, 3.5))
ax.plot([row.receptive_field.size[0] for row in rows], marker="o")
ax.set_xticks(range(len(rows)), [row.name for row in rows], rotation=90, fontsize=7)
ax.set_ylabel("receptive field (pixels)")
ax.set_title("ResNet-18 at 224×224: receptive field along the main path")
fig.tight_layout()
