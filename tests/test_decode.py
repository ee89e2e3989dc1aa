import numpy as np
import pytest
from badfiles import BAD_KINDS, ODD_KINDS, H, W, write_broken, write_odd_but_valid

from wsss.data.decode import DecodeError, decode_image


@pytest.mark.parametrize("kind", ODD_KINDS)
def test_odd_files_decode_to_rgb_uint8(tmp_path, kind):
    path = tmp_path / f"{kind}.jpg"
    write_odd_but_valid(path, kind)
    image = decode_image(path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    expected = (W, H) if kind == "exif_rotated" else (H, W)
    assert image.shape[:2] == expected


def test_rgba_is_composited_on_white(tmp_path):
    path = tmp_path / "a.jpg"
    write_odd_but_valid(path, "png_rgba")
    # half-transparent pixels over white are brighter than 127 everywhere
    assert decode_image(path).min() >= 127


def test_sixteen_bit_keeps_its_range(tmp_path):
    path = tmp_path / "a.jpg"
    write_odd_but_valid(path, "png16")
    image = decode_image(path)
    assert image.max() > 200 and image.min() == 0  # scaled, not clipped to white


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_broken_files_raise_with_reason(tmp_path, kind):
    path = tmp_path / f"{kind}.jpg"
    write_broken(path, kind)
    with pytest.raises(DecodeError) as caught:
        decode_image(path)
    assert BAD_KINDS[kind] in caught.value.reason
    assert str(path) in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(DecodeError, match="unreadable"):
        decode_image(tmp_path / "nope.jpg")
