"""The face pipeline: every kind of upload, landmarks, alignment and region masks."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from detectors.faces import (
    REGIONS,
    CropPolicy,
    ImageTooLarge,
    ImageUnreadable,
    NoFaceFound,
    align_face,
    detect_faces,
    flipped_name,
    load_image,
    region_mask,
    region_masks,
)
from detectors.faces import mesh_indices as idx
from detectors.faces.io import WORKING_SIZE


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def portrait(astronaut) -> Image.Image:
    return Image.fromarray(astronaut)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF"])
def test_common_formats_decode_to_rgb_and_show_a_face(portrait, fmt):
    rgb = load_image(_encode(portrait, fmt))
    assert rgb.dtype == np.uint8 and rgb.shape == (512, 512, 3)
    assert len(detect_faces(rgb)) == 1


def test_gif_takes_the_first_frame(portrait):
    black = Image.new("RGB", portrait.size)
    data = _encode(portrait, "GIF", save_all=True, append_images=[black])
    rgb = load_image(data)
    assert rgb.mean() > 50  # not the black second frame
    assert len(detect_faces(rgb)) == 1


def test_grayscale_and_16_bit(astronaut):
    gray = Image.fromarray(astronaut).convert("L")
    rgb = load_image(_encode(gray, "PNG"))
    assert rgb.shape == (512, 512, 3) and np.array_equal(rgb[..., 0], rgb[..., 1])
    deep = Image.fromarray(np.asarray(gray, np.uint16) * 257)
    rgb16 = load_image(_encode(deep, "PNG"))
    assert np.abs(rgb16[..., 0].astype(int) - np.asarray(gray, int)).max() <= 1
    assert len(detect_faces(rgb16)) == 1


def test_rgba_is_composited_on_white(astronaut):
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    rgba[:50, :50, 3] = 0
    rgb = load_image(_encode(Image.fromarray(rgba), "PNG"))
    assert (rgb[:50, :50] == 255).all()
    assert np.array_equal(rgb[100:], astronaut[100:])


def test_cmyk_jpeg(portrait):
    rgb = load_image(_encode(portrait.convert("CMYK"), "JPEG", quality=95))
    assert rgb.shape == (512, 512, 3)
    assert len(detect_faces(rgb)) == 1


def test_exif_orientation_is_applied(portrait, astronaut):
    stored = portrait.transpose(Image.Transpose.ROTATE_90)  # as a camera held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    rgb = load_image(_encode(stored, "JPEG", quality=95, exif=exif))
    assert rgb.shape == astronaut.shape
    assert np.abs(rgb.astype(int) - astronaut.astype(int)).mean() < 6


def test_large_images_are_downscaled(portrait):
    big = portrait.resize((3000, 3000))
    rgb = load_image(_encode(big, "JPEG", quality=80))
    assert max(rgb.shape[:2]) == WORKING_SIZE
    assert len(detect_faces(rgb)) == 1


def test_decompression_bombs_are_refused():
    bomb = _encode(Image.new("1", (12000, 12000)), "PNG")
    assert len(bomb) < 2_000_000
    with pytest.raises(ImageTooLarge, match="too large"):
        load_image(bomb)


@pytest.mark.parametrize("payload", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
def test_non_images_are_unreadable(payload):
    with pytest.raises(ImageUnreadable, match="could not be read"):
        load_image(payload)


def test_truncated_jpeg_is_unreadable(portrait):
    data = _encode(portrait, "JPEG")
    with pytest.raises(ImageUnreadable):
        load_image(data[:200])


def test_missing_file(tmp_path):
    with pytest.raises(ImageUnreadable, match="no file"):
        load_image(tmp_path / "nope.jpg")


def test_tiny_and_faceless_images_raise_no_face():
    with pytest.raises(NoFaceFound, match="only 8x8 pixels"):
        detect_faces(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(NoFaceFound, match="No face"):
        detect_faces(np.full((200, 300, 3), 127, np.uint8))


def test_tiny_face_image_still_works(astronaut):
    small = np.asarray(Image.fromarray(astronaut[40:220, 140:320]).resize((64, 64)))
    faces = detect_faces(small)
    assert len(faces) == 1 and faces[0].landmarks.max() < 70


def test_landmarks_on_the_astronaut(astronaut):
    (face,) = detect_faces(astronaut)
    assert face.landmarks.shape == (478, 2)
    x0, y0, x1, y1 = face.bbox
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200
    left, right = face.landmarks[idx.LEFT_IRIS_CENTER], face.landmarks[idx.RIGHT_IRIS_CENTER]
    assert left[0] > right[0]  # the person's left eye is on the image's right
    assert face.landmarks[idx.NOSE_TIP][1] > left[1]


def test_several_faces_are_all_reported_largest_first(astronaut):
    small = np.asarray(Image.fromarray(astronaut).resize((384, 384)))
    canvas = np.full((512, 1024, 3), 200, np.uint8)
    canvas[:, :512] = astronaut
    canvas[64:448, 600:984] = small
    faces = detect_faces(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area and faces[0].bbox[0] < 512 <= faces[1].bbox[0]


def test_a_face_small_in_a_large_frame_is_found(astronaut):
    canvas = np.full((1200, 1600, 3), 90, np.uint8)
    canvas[600:1112, 900:1412] = astronaut
    (face,) = detect_faces(canvas)
    x0, y0, x1, y1 = face.bbox
    assert 1050 < x0 < x1 < 1200 and 650 < y0 < y1 < 800


def test_alignment_puts_eyes_level_at_the_template(astronaut):
    (face,) = detect_faces(astronaut)
    import cv2

    rot = cv2.getRotationMatrix2D((256, 256), 25, 1.0)
    rotated = cv2.warpAffine(astronaut, rot, (512, 512), borderMode=cv2.BORDER_REFLECT)
    for image in (astronaut, rotated):
        aligned = align_face(image, detect_faces(image)[0], CropPolicy(size=256))
        assert aligned.image.shape == (256, 256, 3)
        left, right = aligned.landmarks[idx.LEFT_IRIS_CENTER], aligned.landmarks[idx.RIGHT_IRIS_CENTER]
        assert abs(left[1] - right[1]) < 4  # level
        assert abs((left[0] + right[0]) / 2 - 128) < 8  # centred
    box = align_face(astronaut, face, CropPolicy(size=128, align=False, margin=1.0))
    assert box.landmarks.min() >= -1 and box.landmarks.max() <= 129


def test_region_masks_on_the_astronaut(astronaut):
    aligned = align_face(astronaut, detect_faces(astronaut)[0], CropPolicy(size=256))
    masks = region_masks(aligned.landmarks, (256, 256))
    assert set(masks) == set(REGIONS)
    face = masks["face"] > 0.5
    for name, mask in masks.items():
        assert mask.shape == (256, 256) and mask.dtype == np.float32
        assert 0.0 <= mask.min() and mask.max() <= 1.0
        assert (mask > 0.5).sum() > 50, name
        if name not in ("face", "forehead", "jaw"):
            inside = (mask > 0.5) & face
            assert inside.sum() / (mask > 0.5).sum() > 0.9, name
    assert masks["face"].sum() > masks["inner_face"].sum() > masks["nose"].sum()
    # the person's left parts lie on the image's right
    for part in ("eye", "brow", "cheek"):
        xl = np.nonzero(masks[f"left_{part}"])[1].mean()
        xr = np.nonzero(masks[f"right_{part}"])[1].mean()
        assert xl > xr, part
    assert not ((masks["left_eye"] > 0.5) & (masks["left_cheek"] > 0.5)).any()


def test_soft_masks_feather_and_scale_with_size(astronaut):
    aligned = align_face(astronaut, detect_faces(astronaut)[0], CropPolicy(size=256))
    hard = region_mask(aligned.landmarks, "mouth", (256, 256))
    soft = region_mask(aligned.landmarks, "mouth", (256, 256), soft=True)
    assert ((soft > 0.05) & (soft < 0.95)).sum() > ((hard > 0.05) & (hard < 0.95)).sum() * 2
    half = region_mask(aligned.landmarks / 2, "mouth", (128, 128))
    assert abs(half.sum() * 4 / hard.sum() - 1) < 0.1


def test_flip_names():
    assert flipped_name("left_eye") == "right_eye" and flipped_name("right_cheek") == "left_cheek"
    assert flipped_name("nose") == "nose"


@pytest.mark.needs_data
def test_shared_real_faces(real_faces):
    found = 0
    for path in real_faces:
        rgb = load_image(path)
        try:
            face = detect_faces(rgb)[0]
        except NoFaceFound:
            continue
        found += 1
        aligned = align_face(rgb, face, CropPolicy(size=128))
        masks = region_masks(aligned.landmarks, (128, 128), regions=("face", "left_eye", "mouth"))
        assert all((m > 0.5).sum() > 10 for m in masks.values())
    assert found >= 0.9 * len(real_faces)
