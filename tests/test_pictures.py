import numpy as np
import pytest
import torch
from PIL import Image

from anyorder.data.base import DataError
from anyorder.pictures import image_masks, mask_from_png, save_grid, to_images


def test_centre_and_left_half_hide_the_right_boxes():
    centre = image_masks(5, (3, 8, 8), "centre").view(5, 3, 8, 8)
    expected = torch.ones(8, 8, dtype=torch.bool)
    expected[2:6, 2:6] = False
    assert centre.dtype == torch.bool and torch.equal(centre, expected.expand(5, 3, 8, 8))
    left = image_masks(2, (1, 28, 28), "left-half").view(2, 28, 28)
    assert not left[:, :, :14].any() and left[:, :, 14:].all()


def test_random_pixels_fraction_and_alignment():
    gen = torch.Generator().manual_seed(0)
    aligned = image_masks(100, (3, 16, 16), "random-pixels", generator=gen, p=0.2).view(100, 3, 16, 16)
    assert abs((~aligned).float().mean().item() - 0.2) < 0.01
    assert (aligned == aligned[:, :1]).all()
    loose = image_masks(100, (3, 16, 16), "random-pixels", aligned=False, generator=gen).view(100, 3, 16, 16)
    assert abs((~loose).float().mean().item() - 0.5) < 0.01
    assert (loose != loose[:, :1]).any()


@pytest.mark.parametrize("aligned", [True, False])
def test_random_masks_have_uniform_cardinality(aligned):
    C, N, B = 3, 4, 8000                              # 1x4-pixel RGB images
    masks = image_masks(B, (C, 1, 4), "random", aligned=aligned,
                        generator=torch.Generator().manual_seed(1))
    units = N if aligned else C * N
    sizes = masks.view(B, C, N)[:, 0].sum(1) if aligned else masks.sum(1)
    counts = torch.bincount(sizes, minlength=units + 1).float()
    assert counts[units] == 0                         # something is always left to infill
    assert (counts[:units] - B / units).abs().max() < 5 * (B / units) ** 0.5
    if aligned:
        assert (masks.view(B, C, N) == masks.view(B, C, N)[:, :1]).all()
    again = image_masks(B, (C, 1, 4), "random", aligned=aligned,
                        generator=torch.Generator().manual_seed(1))
    assert torch.equal(masks, again)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown mask kind"):
        image_masks(1, (1, 8, 8), "top-half")


def test_png_mask_round_trip(tmp_path):
    gen = torch.Generator().manual_seed(2)
    grey = image_masks(1, (3, 9, 7), "random", generator=gen)[0]
    Image.fromarray(grey.view(3, 9, 7)[0].numpy().astype(np.uint8) * 255).save(tmp_path / "grey.png")
    assert torch.equal(mask_from_png(tmp_path / "grey.png", (3, 9, 7)), grey)
    colour = image_masks(1, (3, 9, 7), "random", aligned=False, generator=gen)[0]
    rgb = colour.view(3, 9, 7).permute(1, 2, 0).numpy().astype(np.uint8)     # 0/1: nonzero counts
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    assert torch.equal(mask_from_png(tmp_path / "rgb.png", (3, 9, 7)), colour)
    assert torch.equal(mask_from_png(tmp_path / "rgb.png", (1, 9, 7)),
                       colour.view(3, 9 * 7).any(0))                         # any colour counts
    Image.fromarray(grey.view(3, 9, 7)[0].numpy()).save(tmp_path / "bits.png")   # mode "1"
    assert torch.equal(mask_from_png(tmp_path / "bits.png", (3, 9, 7)), grey)


def test_png_mask_of_the_wrong_size(tmp_path):
    Image.new("L", (9, 8), 255).save(tmp_path / "small.png")          # 8 high, 9 wide
    with pytest.raises(DataError, match="is 8x9 .* images are 28x28"):
        mask_from_png(tmp_path / "small.png", (1, 28, 28))


def test_to_images_layout_and_levels():
    x = torch.zeros(2, 3 * 4 * 5, dtype=torch.long).view(2, 3, 4, 5)
    x[1, 2, 3, 1] = 16
    x[0, 0, 1, 4] = 8
    images = to_images(x.view(2, -1), (3, 4, 5), levels=17)
    assert images.shape == (2, 4, 5, 3) and images.dtype == np.uint8
    assert images[1, 3, 1, 2] == 255 and images[0, 1, 4, 0] == 128
    assert images.astype(int).sum() == 255 + 128


@pytest.mark.parametrize("channels", [1, 3])
def test_save_grid_size_and_grey_for_unobserved(tmp_path, channels):
    shape, B = (channels, 8, 8), 4
    x = torch.full((B, channels * 64), 16, dtype=torch.long)
    observed = image_masks(B, shape, "left-half")
    save_grid(tmp_path / "grid.png", [x, x, x], shape, levels=17, masks=[None, observed, None])
    picture = Image.open(tmp_path / "grid.png")
    assert picture.size == (2 + B * (8 * 8 + 2), 2 + 3 * (8 * 8 + 2))     # scale 8, pad 2
    assert picture.mode == ("L" if channels == 1 else "RGB")
    pixels = np.asarray(picture).reshape(picture.height, picture.width, -1)
    top, left = 2 + 66, 2                              # second row, first picture
    assert (pixels[top:top + 64, left:left + 32] == 128).all()          # hidden half
    assert (pixels[top:top + 64, left + 32:left + 64] == 255).all()
    assert (pixels[2:66, 2:66] == 255).all()
