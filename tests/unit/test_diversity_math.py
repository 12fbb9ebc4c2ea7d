"""Diversity maths (ddistill/diversity.py): distances, statistics, interval, comparison, heatmap."""

import importlib
import itertools

import pytest
import torch
import torch.nn.functional as F


@pytest.fixture(scope="module")
def dv():
    return importlib.import_module("ddistill.diversity")


def embeddings(n=7, dim=16, seed=0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_matrix_equals_pairwise_cosine_distance(dv):
    e = embeddings()
    d = dv.cosine_distance_matrix(e)
    assert d.shape == (7, 7) and torch.equal(d, d.T) and torch.all(d.diagonal() == 0)
    for i, j in itertools.combinations(range(7), 2):
        ref = 1 - F.cosine_similarity(e[i : i + 1], e[j : j + 1])
        assert abs(float(d[i, j]) - float(ref)) < 1e-6


def test_pairs_and_summary_numbers(dv):
    d = dv.cosine_distance_matrix(embeddings(6))
    pairs = dv.pair_distances(d)
    assert pairs.numel() == 15  # N(N-1)/2
    s, boots = dv.summarize(d, n_boot=500, seed=3)
    assert (s.n, s.n_pairs) == (6, 15)
    assert s.mean == pytest.approx(float(pairs.double().mean()), abs=1e-7)
    assert s.std == pytest.approx(float(pairs.double().std()), abs=1e-7)
    i, j, v = s.max_pair
    assert i < j and v == pytest.approx(float(d.max())) and float(d[i, j]) == pytest.approx(v)
    i, j, v = s.min_pair
    assert v == pytest.approx(float(pairs.min()))
    lo, hi = s.ci
    assert lo < s.mean < hi and boots.numel() == 500


def test_bootstrap_is_seeded_and_order_free(dv):
    e = embeddings(9, seed=1)
    d = dv.cosine_distance_matrix(e)
    a, _ = dv.summarize(d, n_boot=400, seed=5)
    b, _ = dv.summarize(d, n_boot=400, seed=5)
    c, _ = dv.summarize(d, n_boot=400, seed=6)
    assert a.ci == b.ci and a.ci != c.ci
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(2))
    p, _ = dv.summarize(dv.cosine_distance_matrix(e[perm]), n_boot=400, seed=5)
    assert p.mean == pytest.approx(a.mean, abs=1e-6) and p.std == pytest.approx(a.std, abs=1e-6)
    assert p.ci == pytest.approx(a.ci, abs=1e-6)
    assert {perm[p.max_pair[0]].item(), perm[p.max_pair[1]].item()} == {a.max_pair[0], a.max_pair[1]}


def test_bootstrap_excludes_self_pairs(dv):
    # all distinct images at distance exactly 1: every replicate's mean must stay 1 (no fake zeros)
    d = torch.ones(5, 5) - torch.eye(5)
    boots = dv.bootstrap_means(d, n_boot=200, seed=0)
    assert torch.allclose(boots, torch.ones_like(boots))


def test_two_images_have_no_interval(dv):
    d = dv.cosine_distance_matrix(embeddings(2))
    s, _ = dv.summarize(d)
    assert s.n_pairs == 1 and s.ci is None and s.std == 0.0
    assert "n/a (needs >= 3 images)" in dv.format_summary(s)


@pytest.mark.parametrize("n", [0, 1])
def test_too_few_images(dv, n):
    with pytest.raises(ValueError, match="at least 2 images"):
        dv.summarize(torch.zeros(n, n))


def test_nonfinite_embeddings_rejected(dv):
    e = embeddings(3)
    e[1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        dv.cosine_distance_matrix(e)


def test_comparison_difference_and_interval(dv):
    near = embeddings(8, seed=2) * 0.05 + torch.ones(16)  # low diversity
    far = embeddings(8, seed=3)  # high diversity
    c = dv.compare(dv.cosine_distance_matrix(near), dv.cosine_distance_matrix(far), n_boot=400)
    assert c.difference == pytest.approx(c.b.mean - c.a.mean)
    assert c.difference > 0 and c.difference_ci[0] > 0  # clearly more diverse, interval excludes 0
    text = dv.format_comparison(c)
    assert "A: mean pairwise distance" in text and "B - A: +" in text


def test_heatmap_image(dv):
    d = dv.cosine_distance_matrix(embeddings(4))
    img = dv.heatmap_image([d], size=64)
    # size contract unchanged: `size` high, n * (size // n) wide; the colour scale takes the bottom rows
    assert img.shape == (1, 64, 64, 3) and img.min() >= 0 and img.max() <= 1
    bar = dv.scale_bar_height(64)
    cell = (64 - bar) // 4
    x0 = (64 - 4 * cell) // 2  # the matrix is centred above the scale
    # the diagonal cell is the low end of the ramp, the largest distance the high end
    i, j = divmod(int(torch.argmax(d)), 4)
    mid = cell // 2
    assert torch.allclose(img[0, cell * i + mid, x0 + cell * i + mid], dv._RAMP[0], atol=1e-6)
    assert torch.allclose(img[0, cell * i + mid, x0 + cell * j + mid], dv._RAMP[-1], atol=1e-6)
    two = dv.heatmap_image([d, dv.cosine_distance_matrix(embeddings(3))], size=64, gap=8)
    assert two.shape == (1, 64, 64 + 8 + 63, 3)


def test_heatmap_has_a_colour_scale_with_its_end_values(dv):
    """The bottom strip is the ramp from 0 (left) to vmax (right), with 'min 0' and 'max <vmax>' written under it
    inside the image's width."""
    d = dv.cosine_distance_matrix(embeddings(5))
    for size in (64, 512):
        img = dv.heatmap_image([d], size=size, vmax=0.5)[0]
        strip = img[size - dv.scale_bar_height(size) :]
        first = (strip - dv._RAMP[0]).abs().max(-1).values < 0.02
        last = (strip - dv._RAMP[-1]).abs().max(-1).values < 0.02
        assert first.any() and last.any(), size
        assert first.nonzero()[:, 1].float().mean() < last.nonzero()[:, 1].float().mean()  # low end on the left
        dark = (strip.max(-1).values < 0.3).nonzero()  # black text under the bar
        assert dark.numel() and dark[:, 1].min() > 0 and dark[:, 1].max() < img.shape[1] - 1, size
    from PIL import Image, ImageDraw

    from ddistill.x0_preview import load_font, text_width

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    height = dv.scale_bar_height(64)
    font = load_font(max(8, height // 3))
    assert text_width(draw, "min 0", font) + text_width(draw, "max 0.5", font) < 64


def test_bootstrap_counts_form_equals_explicit_resampling(dv):
    """The replicate mean from draw counts equals averaging the resampled pairs of different images."""
    d = dv.cosine_distance_matrix(embeddings(6, seed=4))
    boots = dv.bootstrap_means(d, n_boot=50, seed=9)
    gen = torch.Generator().manual_seed(9)
    order = torch.tensor(dv.canonical_order(d))
    dd = d.double()[order][:, order]
    idx = torch.randint(0, 6, (50, 6), generator=gen)
    for r in range(50):
        vals = [dd[idx[r, a], idx[r, b]] for a in range(6) for b in range(6) if idx[r, a] != idx[r, b]]
        assert float(boots[r]) == pytest.approx(float(torch.stack(vals).mean()), abs=1e-12)


def test_large_batch_stays_bounded(dv):
    e = embeddings(1500, dim=32, seed=5)
    d = dv.cosine_distance_matrix(e)
    s, boots = dv.summarize(d, n_boot=200)
    assert s.n_pairs == 1500 * 1499 // 2 and s.ci[0] < s.mean < s.ci[1]
    img = dv.heatmap_image([d], size=512)
    assert img.shape == (1, 512, 512, 3)  # block means, not a crop
    area = 512 - dv.scale_bar_height(512)
    assert not (img[0, area - 1, 32:-32] == 1.0).all()  # the pooled matrix fills the area above the scale
