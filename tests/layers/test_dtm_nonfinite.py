"""Non-finite offsets in the deformable conv: NaN output for that sample, the others untouched, no crash.

torchvision's kernels turn a NaN sample position into an out-of-range index (a segfault on CPU), so every case runs
in a subprocess (see tests/models/test_bad_inputs.py for the models).
"""

import subprocess
import sys

_CHECK = """
import torch
from litvit.layers import DeformableTokenMerging, OffsetDeformConv2d
from litvit.layers.dtm import deform_conv2x2_s2_nhwc, finite_offsets

torch.manual_seed(0)
conv = OffsetDeformConv2d(6, 10).eval()
with torch.no_grad():
    conv.conv_offset.weight.normal_(0, 0.3)  # non-zero offsets: the bilinear sampling is exercised
x = torch.randn(3, 6, 8, 10)  # NCHW

def check(tag, run, inp, bad_value):
    clean = run(inp)
    bad = inp.clone()
    bad[1, 2, 3, 4] = bad_value  # one element of sample 1
    print(tag, bad_value, flush=True)
    out = run(bad)
    assert out[1].isnan().all(), (tag, bad_value)
    assert torch.equal(out[[0, 2]], clean[[0, 2]]), (tag, bad_value)

for value in (float("nan"), float("inf"), float("-inf")):
    with torch.no_grad():
        check("forward", conv, x, value)
        check("forward_nhwc", conv.forward_nhwc, x.permute(0, 2, 3, 1), value)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 offsets: sampled path / fp32 torchvision call
            check("autocast nhwc", conv.forward_nhwc, x.permute(0, 2, 3, 1), value)
            check("autocast nchw", conv, x, value)
        conv.sampled_fp32 = True
        check("sampled", conv.forward_nhwc, x.permute(0, 2, 3, 1), value)
        conv.sampled_fp32 = False
        check("scripted", torch.jit.script(DeformableTokenMerging(6, 10).eval()), x.permute(0, 2, 3, 1), value)

    # non-finite offsets given directly, with finite images, on the sampled path, with gradients
    offset = torch.randn(3, 8, 4, 5)
    offset[2, 3, 1, 1] = value
    img = x.permute(0, 2, 3, 1).clone().requires_grad_()
    out = deform_conv2x2_s2_nhwc(img, offset, conv.weight, conv.bias)
    assert out[2].isnan().all() and out[:2].isfinite().all()
    out[:2].sum().backward()
    assert img.grad.isfinite().all()

fixed, bad = finite_offsets(offset)
assert bad.view(-1).tolist() == [False, False, True] and fixed.isfinite().all()
print("done")
"""


def test_non_finite_offsets_poison_only_their_sample():
    proc = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, (
        f"exit status {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    )
    assert proc.stdout.strip().endswith("done")
