"""The official code's counting rules, shared by the layers' `flops(H, W)` methods (see litvit.flops)."""


def conv_flops(k: int, cin: int, cout: int, stride: int, pad: int, h: int, w: int, groups: int = 1) -> int:
    """The official conv count on an H x W input: k*k*cin*(cout/groups) MACs plus one bias add per output element.

    The official formula does not divide the input channels by `groups` but the output channels (for the
    depthwise conv of LITv2, cin == cout == groups, so both readings give k*k*C per output position).
    """
    oh = (h + 2 * pad - (k - 1) - 1) // stride + 1
    ow = (w + 2 * pad - (k - 1) - 1) // stride + 1
    return k * k * cin * (cout // groups) * oh * ow + cout * oh * ow
