"""Reading image and mask files, checking labels, and colour palettes: values and errors naming the file."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segan_lib.data.files import check_labels, check_lossless_mask, missing_root_error, read_image, read_mask
from segan_lib.data.palette import decode_colour_mask, palette_table, voc_colormap


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode=mode).save(path)
    return path


# ---------------------------------------------------------------- images
def test_read_image_converts_grey_palette_and_rgba_to_rgb(tmp_path):
    grey = save(tmp_path / "grey.png", np.array([[0, 100], [200, 255]], np.uint8), "L")
    assert read_image(grey).tolist() == [[[0] * 3, [100] * 3], [[200] * 3, [255] * 3]]
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], np.uint8)  # alpha is dropped, not blended
    assert read_image(save(tmp_path / "rgba.png", rgba, "RGBA")).tolist() == [[[10, 20, 30], [40, 50, 60]]]
    indexed = Image.fromarray(np.array([[0, 1]], np.uint8), mode="L").convert("P")
    indexed.putpalette([7, 8, 9, 250, 251, 252] + [0] * 762)  # index 0 -> (7, 8, 9), 1 -> (250, 251, 252)
    indexed.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image.dtype == np.uint8 and image.tolist() == [[[7, 8, 9], [250, 251, 252]]]


def test_read_image_names_an_unreadable_file(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(ValueError, match=r"image .*notes\.png cannot be read.*truncated, corrupt"):
        read_image(tmp_path / "notes.png")
    with pytest.raises(ValueError, match=r"absent\.png cannot be read"):
        read_image(tmp_path / "absent.png")


# ---------------------------------------------------------------- masks
def test_read_mask_keeps_values_indices_and_bits(tmp_path):
    labels = np.array([[0, 3], [255, 7]], np.uint8)
    assert read_mask(save(tmp_path / "l.png", labels, "L")).tolist() == labels.tolist()
    indexed = Image.fromarray(labels, mode="L").convert("P")
    indexed.putpalette(voc_colormap().ravel().tolist())
    indexed.save(tmp_path / "p.png")
    assert read_mask(tmp_path / "p.png").tolist() == labels.tolist()  # indices, not colours
    wide = np.array([[0, 300], [1000, 65535]], np.uint16)
    assert read_mask(save(tmp_path / "i16.png", wide)).tolist() == wide.tolist()
    Image.fromarray(np.array([[True, False]])).save(tmp_path / "bits.png")  # mode "1"
    bits = read_mask(tmp_path / "bits.png")
    assert bits.dtype == np.uint8 and bits.tolist() == [[1, 0]]
    grey_alpha = np.array([[[5, 255], [6, 0]]], np.uint8)
    assert read_mask(save(tmp_path / "la.png", grey_alpha, "LA")).shape == (1, 2, 2)


def test_only_jpeg_masks_count_as_lossy():
    for name in ("m.png", "m.tif", "m.tiff", "m.bmp"):
        check_lossless_mask(Path(name))
    for name in ("m.jpg", "m.JPEG"):
        with pytest.raises(ValueError, match=rf"mask {name} is a JPEG"):
            check_lossless_mask(Path(name))


def test_read_mask_refuses_jpeg_float_and_broken_files(tmp_path):
    save(tmp_path / "m.jpg", np.zeros((4, 4), np.uint8), "L")
    with pytest.raises(ValueError, match=r"mask .*m\.jpg is a JPEG: lossy compression changes label values"):
        read_mask(tmp_path / "m.jpg")
    save(tmp_path / "f.tif", np.array([[0.0, 1.7]], np.float32))
    with pytest.raises(ValueError, match=r"mask .*f\.tif holds float32 values; masks must hold integer"):
        read_mask(tmp_path / "f.tif")
    good = save(tmp_path / "cut.png", np.arange(64, dtype=np.uint8).reshape(8, 8) * 3, "L")
    good.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"mask .*cut\.png cannot be read"):
        read_mask(good)


def test_check_labels_names_the_file_and_the_bad_values():
    check_labels(np.array([[0, 2], [255, 1]]), 3, "ok.png")  # 255 is ignore, not an error
    with pytest.raises(ValueError, match=r"mask m\.png holds label values \[3, 254\] outside the 3 classes 0\.\.2"):
        check_labels(np.array([[0, 3], [254, 3]]), 3, "m.png")
    with pytest.raises(ValueError, match=r"\[-1\]"):
        check_labels(np.array([[-1, 0]]), 2, "neg.png")


def test_missing_root_error_names_root_layout_and_readme():
    error = missing_root_error("Cityscapes", "/data/cs", "ROOT/leftImg8bit/...")
    assert isinstance(error, FileNotFoundError)
    assert str(error).startswith("Cityscapes not found at /data/cs: expected ROOT/leftImg8bit/....")
    assert "data/README.md" in str(error) and "Nothing is downloaded" in str(error)


# ---------------------------------------------------------------- palettes
def test_voc_colormap_devkit_colours():
    colours = voc_colormap()
    assert colours.shape == (256, 3) and colours.dtype == np.uint8
    # index 15 = 0b001111: bits 0, 3 -> red 128 + 64; bit 1 -> green 128; bit 2 -> blue 128
    expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 4: (0, 0, 128), 8: (64, 0, 0),
                15: (192, 128, 128), 20: (0, 64, 128), 255: (224, 224, 192)}
    for index, rgb in expected.items():
        assert tuple(colours[index]) == rgb, index
    assert len({tuple(c) for c in colours.tolist()}) == 256  # every class its own colour
    assert np.array_equal(voc_colormap(21), colours[:21])
    for bad in (0, 257, 2.0, True):
        with pytest.raises(ValueError, match=r"n must be an int in 1\.\.256"):
            voc_colormap(bad)


def test_palette_table_codes_colours_and_rejects_bad_palettes():
    assert palette_table([(0, 0, 0), (1, 2, 3)]) == {0: 0, (1 << 16) + (2 << 8) + 3: 1}
    assert palette_table({(255, 255, 255): 255}) == {0xFFFFFF: 255}
    with pytest.raises(ValueError, match=r"palette colours must be \(r, g, b\).*\(0, 256, 0\)"):
        palette_table([(0, 256, 0)])
    with pytest.raises(ValueError, match=r"\(1, 2\)"):
        palette_table([(1, 2)])
    with pytest.raises(ValueError, match=r"colour \(9, 9, 9\) two classes: 1 and 2"):
        palette_table([(0, 0, 0), (9, 9, 9), (9, 9, 9)])  # classes 1 and 2 share a colour


def test_decode_colour_mask_by_list_and_mapping():
    rgb = np.array([[[0, 0, 0], [255, 0, 0]], [[0, 255, 0], [255, 0, 0]]], np.uint8)  # (2, 2, 3)
    decoded = decode_colour_mask(rgb, [(0, 0, 0), (255, 0, 0), (0, 255, 0)])
    assert decoded.dtype == np.int64 and decoded.tolist() == [[0, 1], [2, 1]]
    mapped = decode_colour_mask(rgb, {(0, 0, 0): 0, (255, 0, 0): 255, (0, 255, 0): 1})
    assert mapped.tolist() == [[0, 255], [1, 255]]  # a colour mapped to 255 is ignored
    with pytest.raises(ValueError, match=r"mask x\.png holds colours not in the palette: \[\(0, 255, 0\)\]"):
        decode_colour_mask(rgb, [(0, 0, 0), (255, 0, 0)], "x.png")
    with pytest.raises(ValueError, match=r"mask g\.png must be a colour image \(H, W, 3\).*\(2, 2\)"):
        decode_colour_mask(rgb[..., 0], [(0, 0, 0)], "g.png")
