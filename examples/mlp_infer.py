"""Batch inference of a two-layer perceptron: logits = relu(x w1 + b1) w2 + b2 for every row of x, weights as inputs.

The weights and the batch are the job's input arrays (float32, as networks are usually stored): x (n, features) is
read by rows, a task getting rows [start, end); w1 (features, hidden), b1 (hidden), w2 (hidden, classes) and
b2 (classes) are read whole by every task. The parameters repeat the four sizes, because the index space, the
output's width and the work are known before any input is seen; a task whose arrays disagree with them fails
(`require`). Output row k holds the `classes` logits of x's row k, in float64; softmax or argmax them on your side.

Each dot product is accumulated in float64 in index order, bias last: float32 times float32 is exact in float64,
every addition is correctly rounded, ReLU is a comparison, and numba runs without fastmath: every worker gets the
same bits, so results are compared exactly. WORK counts the first layer's multiply-adds, hidden x features a row
(the second layer adds hidden x classes, usually far fewer).
"""
import numpy as np

NAME = "mlp-infer"
PARAMS = {
    "batch": (int, 1, 100_000_000, "rows of x: the inputs to classify (the index space: a task is a range of rows)"),
    "features": (int, 1, 65_536, "inputs of the network: the columns of x, the rows of w1"),
    "hidden": (int, 1, 65_536, "units of the hidden layer: the columns of w1, the rows of w2"),
    "classes": (int, 1, 65_536, "outputs of the network: the columns of w2"),
}
INPUTS = {
    "x": ("float32", 2, "rows"),
    "w1": ("float32", 2, "all"),
    "b1": ("float32", 1, "all"),
    "w2": ("float32", 2, "all"),
    "b2": ("float32", 1, "all"),
}
INDEX = "batch"
OUTPUT = ("float64", ("rows", "classes"))
MERGE = "concatenate"
COMPARE = "exact"
WORK = ("rows", "hidden", "features")


def require(ok):
    """Fail the task unless ok: a kernel has no raise, so this indexes past an array (an IndexError)."""
    flag = np.zeros(1, dtype=np.uint8)
    flag[0 if ok else 1] = 1


def layer(v, w, b, relu, out):
    """out = v w + b, then ReLU if relu. Each out[j] sums its terms in k order (the loop over j inside the loop
    over k reads w row by row, as it lies in memory)."""
    for j in range(out.shape[0]):
        out[j] = 0.0
    for k in range(v.shape[0]):
        # np.float64, not float(): numba's float() of a float32 stays a float32
        vk = np.float64(v[k])
        for j in range(out.shape[0]):
            out[j] += vk * np.float64(w[k, j])
    for j in range(out.shape[0]):
        acc = out[j] + np.float64(b[j])
        out[j] = max(acc, 0.0) if relu else acc


def compute(start, end, batch, features, hidden, classes, x, w1, b1, w2, b2, out):
    require(x.shape[1] == features and w1.shape[0] == features and w1.shape[1] == hidden and b1.shape[0] == hidden
            and w2.shape[0] == hidden and w2.shape[1] == classes and b2.shape[0] == classes)
    h = np.zeros(hidden, dtype=np.float64)
    for row in range(end - start):
        layer(x[row], w1, b1, True, h)
        layer(h, w2, b2, False, out[row])
