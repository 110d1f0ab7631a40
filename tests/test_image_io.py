import io

import numpy as np
import pytest
from PIL import Image

from sr_models.base import SRInputError
from sr_models.image_io import load_image


def _png_bytes(img: Image.Image, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_rgb_png_round_trip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    out, notes = load_image(tmp_path / "a.png")
    assert np.array_equal(out, arr) and notes == []


def test_non_image_file(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image")
    with pytest.raises(SRInputError, match="not an image"):
        load_image(tmp_path / "notes.png")


def test_truncated_png(tmp_path):
    data = _png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(SRInputError, match="truncated or corrupt"):
        load_image(tmp_path / "cut.png")


def test_missing_file(tmp_path):
    with pytest.raises(SRInputError, match="not found"):
        load_image(tmp_path / "nope.png")


def test_rgba_composited_over_white_and_reported():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half
    rgba[:, 2:, 3] = 255
    out, notes = load_image(_png_bytes(Image.fromarray(rgba, "RGBA")))
    assert out.shape == (4, 4, 3)
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 3].tolist() == [255, 0, 0]
    assert any("transparency" in n for n in notes)


def test_palette_grayscale_cmyk_are_converted_with_a_note():
    base = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    for img, word in [(base.convert("P"), "palette"), (base.convert("L"), "grayscale"), (base.convert("CMYK"), "CMYK")]:
        fmt = "JPEG" if img.mode == "CMYK" else "PNG"
        out, notes = load_image(_png_bytes(img, fmt))
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8
        assert any(word in n for n in notes), (word, notes)
    gray, _ = load_image(_png_bytes(base.convert("L")))
    assert np.array_equal(gray[..., 0], gray[..., 2])


def test_16_bit_grayscale_is_rescaled_not_clipped():
    arr = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    out, notes = load_image(_png_bytes(Image.fromarray(arr)))
    assert out[..., 0].tolist() == [[0, 255], [128, 4]]
    assert any("16-bit" in n for n in notes)


def test_pixel_limit(tmp_path):
    Image.new("RGB", (200, 100)).save(tmp_path / "big.png")
    with pytest.raises(SRInputError, match="above the limit"):
        load_image(tmp_path / "big.png", max_pixels=10_000)
    out, _ = load_image(tmp_path / "big.png", max_pixels=20_000)
    assert out.shape == (100, 200, 3)
