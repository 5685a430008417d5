"""Per-method numerics against a float reference (tiny random tensors, no model files)."""

import pytest
import torch

from compression.compress.methods.baseline import Int8, Int8Config, int8_per_row
from compression.compress.methods.binarize import Binarize, BinarizeConfig, scaled_sign
from compression.compress.methods.deep import Deep, DeepConfig
from compression.compress.methods.kmeans import KMeans, KMeansConfig, kmeans_quantize, linear_init
from compression.compress.methods.prune import Prune, PruneConfig, cubic_sparsity


@pytest.fixture
def weights():
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(64, 48, generator=g) * 0.05, "b.weight": torch.randn(32, 64, generator=g)}


def rel_error(w, q):
    return ((w - q).norm() / w.norm()).item()


def test_kmeans_error_falls_as_bits_rise_and_values_fit_the_codebook(weights):
    w = weights["a.weight"]
    errors = []
    for bits in range(1, 9):
        q = kmeans_quantize(w, bits)
        assert q.unique().numel() <= 2**bits
        errors.append(rel_error(w, q))
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.01  # 8 bits: close to the float reference
    per_row = kmeans_quantize(w, 2, rpg=1)
    assert rel_error(w, per_row) < errors[1]  # a codebook per row fits better than one per tensor
    assert all(row.unique().numel() <= 4 for row in per_row)


def test_linear_init_spans_min_to_max():
    wg = torch.tensor([[-2.0, 0.0, 1.0, 4.0]])
    assert torch.allclose(linear_init(wg, 4), torch.tensor([[-2.0, 0.0, 2.0, 4.0]]))


@pytest.mark.parametrize("granularity", ["tensor", "row", "group"])
def test_kmeans_records_hold_at_most_2_to_bits_values_per_group(weights, granularity):
    m = KMeans(KMeansConfig(bits=3, granularity=granularity, group_rows=16), weights)
    recs = m.records(weights)
    for n, w in weights.items():
        r = recs[n]
        assert r["codes"].shape == tuple(w.shape) and r["codes"].max() < 8
        rpg = r["rows_per_group"]
        assert rpg == {"tensor": w.shape[0], "row": 1, "group": 16}[granularity]
        assert r["codebook"].shape == (w.shape[0] // rpg, 8)
        fake = m.fake(n, w)
        assert all(g.unique().numel() <= 8 for g in fake.reshape(w.shape[0] // rpg, -1))


def test_trained_centroids_get_the_sum_of_their_cluster_gradients(weights):
    w = weights["a.weight"].clone().requires_grad_(True)
    m = KMeans(KMeansConfig(bits=2, train="centroids"), {"a.weight": w.detach()})
    upstream = torch.randn_like(w)
    (m.fake("a.weight", w) * upstream).sum().backward()
    codes = m.codes("a.weight", w).flatten()
    grad = m.codebooks["a__weight"].grad.flatten()
    for k in range(4):
        assert torch.allclose(grad[k], upstream.flatten()[codes == k].sum(), atol=1e-4)


@pytest.mark.parametrize("mode", ["sign", "two-centroid"])
@pytest.mark.parametrize("granularity", ["tensor", "row", "group"])
def test_binarized_layers_hold_exactly_two_values(weights, mode, granularity):
    m = Binarize(BinarizeConfig(mode=mode, granularity=granularity, group_rows=4), weights)
    recs = m.records(weights)
    for n, w in weights.items():
        fake = m.fake(n, w)
        groups = fake.reshape({"row": w.shape[0], "group": w.shape[0] // 4, "tensor": 1}[granularity], -1)
        assert all(g.unique().numel() == 2 for g in groups)
        r = recs[n]
        assert r["kind"] == "binary" and set(r["codes"].flatten().tolist()) == {0, 1}
        if mode == "sign":
            assert (r["codebook"][:, 0] == -r["codebook"][:, 1]).all()
            rpg = {"row": 1, "group": 4, "tensor": w.shape[0]}[granularity]
            assert rel_error(w, fake) == pytest.approx(rel_error(w, scaled_sign(w, rpg)), abs=1e-3)


def test_cubic_schedule():
    assert cubic_sparsity(0.0, 0.9) == 0.0
    assert cubic_sparsity(1.0, 0.9) == pytest.approx(0.9)
    assert cubic_sparsity(0.5, 0.9, begin=0.0, end=0.5) == pytest.approx(0.9)
    assert cubic_sparsity(0.25, 0.8, begin=0.0, end=0.5) == pytest.approx(0.8 * (1 - 0.5**3))
    values = [cubic_sparsity(p / 10, 0.9, 0.1, 0.1, 0.7) for p in range(11)]
    assert values == sorted(values)


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.95])
def test_pruning_hits_the_exact_sparsity(weights, scope, sparsity):
    ws = {n: w.clone() for n, w in weights.items()}
    m = Prune(PruneConfig(sparsity=sparsity, scope=scope), ws)
    m.update(ws, 1.0)
    total = sum(w.numel() for w in ws.values())
    zeros = sum((w == 0).sum().item() for w in ws.values())
    if scope == "layer":
        for w in ws.values():
            assert (w == 0).sum().item() == round(sparsity * w.numel())
    else:
        assert zeros == round(sparsity * total)
    # magnitude: every survivor is at least as large as every pruned weight of its layer (layer-wise)
    if scope == "layer":
        for n in ws:
            kept = weights[n][m.masks[n]].abs()
            assert kept.min() >= weights[n][~m.masks[n]].abs().max()


def test_gradual_pruning_never_regrows(weights):
    ws = {n: w.clone() for n, w in weights.items()}
    m = Prune(PruneConfig(sparsity=0.8, end=1.0, update_every=1), ws)
    previous = {n: torch.ones_like(w, dtype=torch.bool) for n, w in ws.items()}
    for step in range(11):
        for w in ws.values():  # training moves weights, pruned ones included, before constrain()
            w.add_(torch.randn_like(w) * 0.01)
        m.constrain(ws)
        m.update(ws, step / 10, step)
        for n in ws:
            assert not (m.masks[n] & ~previous[n]).any()
            assert (ws[n][~m.masks[n]] == 0).all()
            previous[n] = m.masks[n].clone()


def test_deep_compression_quantizes_the_survivors(weights):
    ws = {n: w.clone() for n, w in weights.items()}
    m = Deep(DeepConfig(sparsity=0.75, bits=2), ws)
    m.update(ws, 1.0)
    recs = m.records(ws)
    for n, w in ws.items():
        fake = m.fake(n, w)
        assert (fake == 0).sum().item() >= round(0.75 * w.numel())
        assert fake[fake != 0].unique().numel() <= 4
        r = recs[n]
        assert r["kind"] == "sparse" and len(r["indices"]) == w.numel() - round(0.75 * w.numel())


def test_int8_per_output_channel(weights):
    w = weights["b.weight"]
    q, scale = int8_per_row(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    assert rel_error(w, q.float() * scale[:, None]) < 0.01
    rec = Int8(Int8Config(), weights).records(weights)["b.weight"]
    assert rec["q"].shape == tuple(w.shape) and rec["scale"].shape == (w.shape[0],)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError):
        KMeansConfig(bits=9)
    with pytest.raises(ValueError):
        PruneConfig(sparsity=0.5, initial_sparsity=0.6)
    with pytest.raises(ValueError, match="group_rows"):
        KMeans(KMeansConfig(granularity="group", group_rows=7), {"x": torch.zeros(64, 4)})
