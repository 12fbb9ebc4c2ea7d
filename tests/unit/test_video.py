"""Clips in the display and diversity maths (ddistill/video.py)."""

import pytest
import torch

from ddistill import diversity, video


def test_strip_frames_keeps_first_middle_last():
    assert video.strip_frames(1) == [0] and video.strip_frames(2) == [0, 1]
    assert video.strip_frames(9) == [0, 4, 8] and video.strip_frames(81) == [0, 40, 80]


def test_clips_to_strips_puts_frames_side_by_side():
    clips = torch.arange(2 * 5 * 2 * 3 * 3, dtype=torch.float32).view(2, 5, 2, 3, 3)
    strips = video.clips_to_strips(clips)
    assert strips.shape == (2, 2, 9, 3)
    assert torch.equal(strips[:, :, 3:6], clips[:, 2]) and torch.equal(strips[:, :, 6:], clips[:, 4])
    single = video.clips_to_strips(clips[:, :1])
    assert single.shape == (2, 2, 3, 3) and torch.equal(single, clips[:, 0])
    images = torch.rand(4, 8, 8, 3)
    assert video.clips_to_strips(images) is images


def test_group_clips_from_5d_and_from_frames_per_video():
    five = torch.rand(3, 9, 4, 4, 3)
    flat, v, f = video.group_clips(five, 0)
    assert (v, f) == (3, 9) and flat.shape == (27, 4, 4, 3) and torch.equal(flat[9], five[1, 0])
    flat, v, f = video.group_clips(five.flatten(0, 1), 9)
    assert (v, f) == (3, 9)
    with pytest.raises(ValueError, match="images: 27 frames do not split into videos of 4 frames"):
        video.group_clips(five.flatten(0, 1), 4)
    with pytest.raises(ValueError, match="frames_per_video is 4; set it to 0"):
        video.group_clips(five, 4)


def test_clip_pairs_do_not_depend_on_the_frame_count():
    """3 clips: 3 pairs whatever the frames per clip; a clip of identical frames scores as one image."""
    g = torch.Generator().manual_seed(0)
    per_clip = torch.randn(3, 16, generator=g)
    for frames in (1, 9, 27):
        emb = per_clip.repeat_interleave(frames, dim=0)
        d = diversity.cosine_distance_matrix(video.clip_embeddings(emb, 3, frames))
        assert d.shape == (3, 3)
        assert torch.allclose(d, diversity.cosine_distance_matrix(per_clip), atol=1e-6)
