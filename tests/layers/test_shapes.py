"""Size helpers the layers share: eager calls keep their no-copy fast path, traced calls are branch-free."""

import torch

from litvit.export.program import _export
from litvit.layers._shapes import crop_map, pad_to_multiple


def test_eager_padding_copies_nothing_when_sides_are_multiples():
    x = torch.randn(2, 8, 12, 5)
    assert pad_to_multiple(x, 4, channels_last=True) is x
    assert pad_to_multiple(x.permute(0, 3, 1, 2), 4, channels_last=False).data_ptr() == x.data_ptr()


def test_padding_and_crop_are_inverse():
    x = torch.randn(2, 7, 10, 3)  # (B, H, W, C)
    padded = pad_to_multiple(x, 4, channels_last=True)
    assert padded.shape == (2, 8, 12, 3)
    assert padded[:, 7:].abs().sum() == 0 and padded[:, :, 10:].abs().sum() == 0  # zeros bottom / right
    assert torch.equal(crop_map(padded, 7, 10), x)
    image = torch.randn(1, 3, 29, 30)
    assert pad_to_multiple(image, 4, channels_last=False).shape == (1, 3, 32, 32)


def test_traced_padding_follows_the_input_size():
    """Exported once with dynamic sizes, the pad / crop are right at sizes that need none and at sizes that do."""

    class PadCrop(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = pad_to_multiple(x, 4, channels_last=True) * 2
            return crop_map(y, x.shape[1], x.shape[2]), y

    h, w = torch.export.Dim("h", min=2), torch.export.Dim("w", min=2)
    program = _export(PadCrop(), (torch.randn(1, 8, 8, 3),), ({1: h, 2: w},))  # litvit.export's torch.export call
    for size in [(8, 8), (7, 10), (5, 3)]:
        x = torch.randn(1, *size, 3)
        cropped, padded = program.module()(x)
        torch.testing.assert_close(cropped, 2 * x, rtol=0, atol=0)
        assert padded.shape[1:3] == (4 * -(-size[0] // 4), 4 * -(-size[1] // 4))
