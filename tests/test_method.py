"""Every formula of the paper against values worked out by hand."""
import math

import pytest
import torch

from pipeline.model.clustering import (CrossBatchMemory, expand_scores, farthest_init, kmeans2,
                                       pseudo_labels, random_init)
from pipeline.model.losses import batch_clustering_loss, centre_distance, kmax_k, kmax_loss, total_loss
from pipeline.model.network import AnomalyGCN, GraphConv, proximity_adjacency, similarity_adjacency


# ---------------------------------------------------------------- eq. 2: k-max loss
@pytest.mark.parametrize("T,k", [(1, 1), (7, 1), (8, 2), (16, 3), (100, 13), (150, 19)])
def test_kmax_k_is_floor_T_over_8_plus_1(T, k):
    assert kmax_k(T) == k


def test_kmax_loss_single_top_segment():
    # T=3 -> k=1. Abnormal video: top score 0.9 -> -log 0.9 = 0.1053605.
    # Normal video: top score 0.3 -> -log(1 - 0.3) = 0.3566749. Mean over the batch: 0.2310177.
    scores = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.3, 0.2]])
    labels = torch.tensor([1, 0])
    assert kmax_loss(scores, labels).item() == pytest.approx(0.2310177, abs=1e-6)


def test_kmax_loss_averages_over_top_k():
    # T=8 -> k=2; top two of an abnormal video are 0.9 and 0.8: (-log .9 - log .8) / 2 = 0.1642520.
    scores = torch.tensor([[0.1, 0.9, 0.2, 0.8, 0.1, 0.1, 0.3, 0.2]])
    assert kmax_loss(scores, torch.tensor([1])).item() == pytest.approx(0.1642520, abs=1e-6)


def test_kmax_loss_is_finite_at_saturated_scores():
    scores = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert torch.isfinite(kmax_loss(scores, torch.tensor([0, 1])))


# ---------------------------------------------------------------- eq. 1 and eq. 3
def test_batch_clustering_loss_normal_and_abnormal():
    c = torch.tensor([[0.0, 0.0], [3.0, 4.0]])           # d = 5
    assert centre_distance(c).item() == pytest.approx(5.0)
    assert batch_clustering_loss(c, normal=True, mu=1.0).item() == pytest.approx(1.0)    # min(5, 1)
    assert batch_clustering_loss(c, normal=True, mu=10.0).item() == pytest.approx(5.0)   # min(5, 10)
    assert batch_clustering_loss(c, normal=False, mu=1.0).item() == pytest.approx(0.2)   # 1 / 5


def test_batch_clustering_loss_gradients():
    c = torch.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True)
    batch_clustering_loss(c, normal=True, mu=10.0).backward()
    # d(d)/d(c1) = (c1 - c2) / d = (-0.6, -0.8): pulling normal centres together
    assert torch.allclose(c.grad, torch.tensor([[-0.6, -0.8], [0.6, 0.8]]))
    c.grad = None
    batch_clustering_loss(c, normal=False, mu=1.0).backward()
    # d(1/d)/d(c1) = -(c1 - c2) / d^3 = (0.024, 0.032): pushing abnormal centres apart
    assert torch.allclose(c.grad, torch.tensor([[0.024, 0.032], [-0.024, -0.032]]))


def test_batch_clustering_loss_guards_coinciding_centres():
    c = torch.zeros(2, 4)
    assert batch_clustering_loss(c, normal=False, mu=1.0, eps=1e-3).item() == pytest.approx(1000.0)


def test_total_loss_eq3():
    assert total_loss(torch.tensor(0.5), torch.tensor(2.0), 0.1).item() == pytest.approx(0.7)


# ---------------------------------------------------------------- k-means K=2 with live centres
def test_kmeans2_assignments_and_centres():
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]], requires_grad=True)
    assign, centres = kmeans2(x, torch.tensor([[0.0, 0.0], [10.0, 0.0]]))
    assert assign.tolist() == [0, 0, 1, 1]
    assert torch.allclose(centres, torch.tensor([[0.0, 0.5], [10.0, 0.5]]))


def test_kmeans2_centres_carry_gradient_to_features():
    # The known bug of public code: clustering detached copies leaves L_bc without gradient.
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]], requires_grad=True)
    _, centres = kmeans2(x, torch.tensor([[0.0, 0.0], [10.0, 0.0]]))
    centres.sum().backward()
    assert torch.allclose(x.grad, torch.full((4, 2), 0.5))       # each centre is the mean of 2 points


def test_kmeans2_converges_from_a_bad_start():
    x = torch.tensor([[0.0], [1.0], [9.0], [10.0]])
    assign, centres = kmeans2(x, torch.tensor([[0.0], [1.0]]))
    # start {0} | {1, 9, 10} -> centres 0, 6.67 -> {0, 1} | {9, 10} -> centres 0.5, 9.5
    assert assign.tolist() == [0, 0, 1, 1]
    assert torch.allclose(centres, torch.tensor([[0.5], [9.5]]))


def test_kmeans2_extra_points_join_the_clustering():
    x = torch.tensor([[0.0], [10.0]], requires_grad=True)
    extra = torch.tensor([[2.0], [12.0]])
    assign, centres = kmeans2(x, torch.tensor([[0.0], [10.0]]), extra=extra)
    assert assign.tolist() == [0, 1]                               # only the live points are returned
    assert torch.allclose(centres, torch.tensor([[1.0], [11.0]]))   # means over live + extra points


def test_random_and_farthest_init():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    r = random_init(x, torch.Generator().manual_seed(0))
    assert r.shape == (2, 2) and not torch.equal(r[0], r[1])
    assert torch.equal(farthest_init(x), torch.tensor([[0.0, 0.0], [5.0, 5.0]]))


# ---------------------------------------------------------------- eq. 4 and eq. 5
def test_pseudo_labels_flip_when_inverted_labels_match_better():
    s = torch.tensor([0.9, 0.1, 0.8])
    # cos(s, [0,1,0]) = 0.1/|s| ; cos(s, [1,0,1]) = 1.7/(|s| sqrt 2): the inverse wins -> flip
    assert pseudo_labels(s, torch.tensor([0, 1, 0])).tolist() == [1.0, 0.0, 1.0]
    # already aligned: kept
    assert pseudo_labels(s, torch.tensor([1, 0, 1])).tolist() == [1.0, 0.0, 1.0]


def test_pseudo_labels_all_one_cluster():
    # y^c all zero: cos(s, 0) counts as 0, cos(s, 1) > 0 -> every segment pseudo-labelled 1
    assert pseudo_labels(torch.tensor([0.2, 0.4]), torch.tensor([0, 0])).tolist() == [1.0, 1.0]


def test_expand_scores_eq5():
    s = torch.tensor([[0.5, 0.8, 0.3], [0.5, 0.8, 0.3]])
    pseudo = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    out = expand_scores(s, pseudo, torch.tensor([1, 0]), alpha=1.3)
    # abnormal video: 1.3*0.5 = 0.65, min(1.3*0.8, 1) = 1, label 0 unchanged; normal video unchanged
    assert torch.allclose(out, torch.tensor([[0.65, 1.0, 0.3], [0.5, 0.8, 0.3]]))


# ---------------------------------------------------------------- cross-batch memory (Table 4)
def _centres(a, b):
    return torch.tensor([a, b], dtype=torch.float32)


def test_way1_clusters_last_epoch_store_into_next_epoch_start():
    m = CrossBatchMemory("1")
    x = torch.tensor([[3.0, 3.0], [4.0, 4.0], [5.0, 5.0]])
    first = m.init_for(x, torch.Generator().manual_seed(0))
    assert all(any(torch.equal(r, p) for p in x) for r in first)     # epoch 1: two random segments
    m.store(_centres([0, 0], [10, 0]))
    m.store(_centres([0, 1], [10, 1]))
    assert all(any(torch.equal(r, p) for p in x) for r in m.init_for(x))   # still epoch 1
    m.end_epoch()
    # store {(0,0),(10,0),(0,1),(10,1)} -> two centres (0, .5) and (10, .5)
    assert torch.allclose(m.init_for(x), _centres([0, 0.5], [10, 0.5]))
    m.store(_centres([1, 1], [2, 2]))
    assert torch.allclose(m.init_for(x), _centres([0, 0.5], [10, 0.5]))   # fixed for the whole epoch


def test_way2_starts_from_previous_batch():
    m = CrossBatchMemory("2")
    m.store(_centres([0, 0], [1, 1]))
    m.store(_centres([2, 2], [3, 3]))
    assert torch.equal(m.init_for(torch.zeros(3, 2)), _centres([2, 2], [3, 3]))


def test_way3_reclusters_all_previous_batches():
    m = CrossBatchMemory("3")
    m.store(_centres([0, 0], [10, 0]))
    m.end_epoch()
    m.store(_centres([0, 1], [10, 1]))
    assert torch.allclose(m.init_for(torch.zeros(3, 2)), _centres([0, 0.5], [10, 0.5]))


def test_way4_previous_epoch_centres_join_as_points():
    m = CrossBatchMemory("4")
    assert m.extra_points() is None
    m.store(_centres([0, 0], [10, 0]))
    assert m.extra_points() is None                 # only the *previous* epoch's centres
    m.end_epoch()
    assert torch.equal(m.extra_points(), _centres([0, 0], [10, 0]))


def test_memory_state_roundtrip_through_weights_only_load(tmp_path):
    m = CrossBatchMemory("1")
    m.store(_centres([0, 0], [10, 0]))
    m.end_epoch()
    torch.save(m.state_dict(), tmp_path / "m.pt")
    m2 = CrossBatchMemory("none")
    m2.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert m2.way == "1" and torch.equal(m2.init_for(torch.zeros(2, 2)), m.init_for(torch.zeros(2, 2)))


def test_unknown_way_rejected():
    with pytest.raises(ValueError, match="cross-batch way"):
        CrossBatchMemory("5")


# ---------------------------------------------------------------- the graph network
def test_similarity_adjacency_threshold_and_softmax():
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    a = similarity_adjacency(x)[0]
    e = math.e
    assert torch.allclose(a[0], torch.tensor([e, e, 1.0]) / (2 * e + 1), atol=1e-6)
    # cos 0.6 < 0.7 is zeroed before the softmax: row [1, 0(was .6)] -> [e, 1] / (e + 1)
    y = torch.tensor([[[1.0, 0.0], [0.6, 0.8]]])
    assert torch.allclose(similarity_adjacency(y)[0, 0], torch.tensor([e, 1.0]) / (e + 1), atol=1e-6)
    # cos 0.8 >= 0.7 is kept: row [1, .8] -> softmax
    z = torch.tensor([[[1.0, 0.0], [0.8, 0.6]]])
    assert torch.allclose(similarity_adjacency(z)[0, 0], torch.softmax(torch.tensor([1.0, 0.8]), 0), atol=1e-6)


def test_proximity_adjacency_values():
    a = proximity_adjacency(3)
    w = torch.tensor([1.0, math.exp(-1 / math.e), math.exp(-2 / math.e)])   # 1, .692201, .479142
    assert torch.allclose(a[0], w / w.sum(), atol=1e-6)                     # .460544 .318787 .220669
    assert torch.allclose(a[0], torch.tensor([0.460544, 0.318787, 0.220669]), atol=1e-5)
    assert torch.allclose(a.sum(1), torch.ones(3))


def test_graphconv_mixes_the_two_graphs():
    g = GraphConv(2, 1, "sum")
    with torch.no_grad():
        g.weight.weight.copy_(torch.tensor([[1.0, 0.0]]))
        g.weight.bias.zero_()
        g.residual.weight.zero_()
    h = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])                      # (1, T=2, 2)
    a_sim = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    a_prox = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    out = g(h, a_sim, a_prox)                                           # 0.5*[1,3] + 0.5*[3,1] = [2, 2]
    assert torch.allclose(out.flatten(), torch.tensor([2.0, 2.0]))
    assert GraphConv(2, 1, "similarity").mix().item() == 1.0
    assert GraphConv(2, 1, "proximity").mix().item() == 0.0


def test_model_shapes_and_range():
    torch.manual_seed(0)
    m = AnomalyGCN(in_dim=64).eval()
    out = m(torch.randn(3, 10, 64))
    assert out["fc"].shape == (3, 10, 512) and out["gcn1"].shape == (3, 10, 128)
    assert out["gcn2"].shape == (3, 10, 32) and out["scores"].shape == (3, 10)
    assert ((out["scores"] >= 0) & (out["scores"] <= 1)).all()
    with pytest.raises(ValueError, match="expected features"):
        m(torch.randn(3, 10, 63))


def test_clustering_loss_reaches_backbone_weights():
    torch.manual_seed(0)
    m = AnomalyGCN(in_dim=16, dropout=0.0)
    z = torch.nn.functional.normalize(m(torch.randn(2, 12, 16))["gcn1"], dim=-1).reshape(-1, 128)
    _, c = kmeans2(z, random_init(z, torch.Generator().manual_seed(1)))
    batch_clustering_loss(c, normal=False, mu=1.0).backward()
    assert m.fc.weight.grad is not None and m.fc.weight.grad.abs().sum() > 0
    assert m.gcn1.weight.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- eq. 2 + eq. 5 in logit space (what training uses)
def test_kmax_loss_logits_equals_probability_form():
    from pipeline.model.losses import kmax_loss_logits
    torch.manual_seed(0)
    logits = torch.randn(4, 10)
    labels = torch.tensor([0, 1, 0, 1])
    assert kmax_loss_logits(logits, labels).item() == pytest.approx(kmax_loss(torch.sigmoid(logits), labels).item(),
                                                                     abs=1e-5)
    boost = torch.rand(4, 10) > 0.5
    boost[labels == 0] = False
    expanded = expand_scores(torch.sigmoid(logits), boost.float(), labels, alpha=1.3)
    assert kmax_loss_logits(logits, labels, boost, 1.3).item() == pytest.approx(kmax_loss(expanded, labels).item(),
                                                                               abs=1e-5)


def test_kmax_loss_logits_by_hand_and_unsaturated():
    from pipeline.model.losses import kmax_loss_logits
    # T=3 -> k=1; abnormal video logit 0 (s = .5) boosted by alpha 1.3: -log(.65) = 0.4307829
    z = torch.tensor([[0.0, -5.0, -5.0]])
    assert kmax_loss_logits(z, torch.tensor([1]), torch.tensor([[True, False, False]]), 1.3).item() == \
        pytest.approx(0.4307829, abs=1e-6)
    # a normal video scored with a huge logit: loss ~ the logit itself, gradient still 1 (no saturation)
    z = torch.tensor([[40.0, 0.0, 0.0]], requires_grad=True)
    loss = kmax_loss_logits(z, torch.tensor([0]))
    loss.backward()
    assert loss.item() == pytest.approx(40.0, abs=1e-4) and z.grad[0, 0].item() == pytest.approx(1.0)


def test_model_standardisation_buffers_travel_in_state_dict():
    m = AnomalyGCN(in_dim=4, dropout=0.0).eval()
    x = torch.tensor([[[10.0, 20.0, 30.0, 40.0]]])
    before = m(x)["scores"]
    m.feature_mean.copy_(torch.tensor([10.0, 20.0, 30.0, 40.0]))
    m.feature_std.fill_(2.0)
    assert torch.allclose(m(x)["fc"], torch.relu(m.fc.bias))     # standardised input is 0
    m2 = AnomalyGCN(in_dim=4, dropout=0.0).eval()
    m2.load_state_dict(m.state_dict())
    assert torch.equal(m2.feature_std, torch.full((4,), 2.0)) and not torch.equal(m2(x)["scores"], before)


# ----------------------------------------------------------------------------- issue 22: views, centring

def test_video_centred_input_by_hand():
    from pipeline.model.network import video_centred_input
    x = torch.tensor([[[1.0, 0.0], [3.0, 5.0], [10.0, 1.0]]])              # (1, 3, 2): medians 3 and 1
    want = torch.tensor([[[1.0, 0.0, -2.0, -1.0], [3.0, 5.0, 0.0, 4.0], [10.0, 1.0, 7.0, 0.0]]])
    assert torch.equal(video_centred_input(x), want)


def test_normal_reference_by_hand():
    """The mean of the share of segments nearest the normals' mean, in their z-space."""
    from pipeline.model.network import normal_reference, video_centred_input
    x = torch.tensor([[[0.0, 0.0], [4.0, 2.0], [1.0, 0.0], [9.0, 9.0]]])   # (1, T=4, D=2)
    mean, std = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 2.0])
    # squared z-distances: (1 + 0), (9 + 1), (0 + 0), (64 + 20.25) -> nearest: segment 2, then 0
    assert torch.equal(normal_reference(x, mean, std, 0.25), torch.tensor([[[1.0, 0.0]]]))   # k = 1
    assert torch.equal(normal_reference(x, mean, std, 0.5), torch.tensor([[[0.5, 0.0]]]))    # k = 2
    assert torch.equal(normal_reference(x, mean, std, 0.01), torch.tensor([[[1.0, 0.0]]]))   # at least one
    ref = normal_reference(x, mean, std, 0.5)
    assert torch.equal(video_centred_input(x, ref)[0, 3], torch.tensor([9.0, 9.0, 8.5, 9.0]))


def test_moving_mean_by_hand():
    from pipeline.model.network import moving_mean
    s = torch.tensor([0.0, 0.0, 0.9, 0.3, 0.0])
    want = torch.tensor([0.0, 0.3, 0.4, 0.4, 0.15])      # (0+0)/2, (0+0+.9)/3, (0+.9+.3)/3, (.9+.3+0)/3, (.3+0)/2
    assert torch.allclose(moving_mean(s, 3), want)
    assert torch.equal(moving_mean(s, 1), s)
    assert torch.allclose(moving_mean(s, 5)[2], s.mean())
    assert torch.equal(moving_mean(torch.tensor([0.7]), 3), torch.tensor([0.7]))


def test_normal_centring_and_smoothing_in_the_model():
    """centre='normal' uses its buffers (set by training, kept in the state dict); clip_scores smooths."""
    from pipeline.model.network import build_model, moving_mean
    torch.manual_seed(0)
    m = build_model(dict(video_centre=True, centre="normal", normal_share=0.5, smooth=3, adjacency="none"), 3).eval()
    assert "normal_mean" in m.state_dict() and "normal_std" in m.state_dict()
    old = build_model(dict(video_centre=True, adjacency="none"), 3)                 # a checkpoint from before
    assert old.centre == "median" and old.smooth == 1 and "normal_mean" not in old.state_dict()
    x = torch.randn(1, 6, 3)                                                        # (V, T, D)
    raw = m.forward_views(x[None])["scores"][0]
    assert torch.allclose(m.clip_scores(x), moving_mean(raw, 3))
    m.normal_mean.fill_(5.0)
    assert not torch.allclose(m.forward_views(x[None])["scores"][0], raw)           # the reference moved
    with pytest.raises(ValueError, match="odd"):
        build_model(dict(smooth=2), 3)


def test_pool_regions_by_hand():
    from pipeline.features.video import pool_regions
    fmap = torch.arange(16.0).reshape(1, 1, 1, 4, 4)                      # one channel, one time step
    # 2 x 2 grid: the four 2 x 2 quadrants, row-major
    assert pool_regions(fmap, (2, 2)).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    assert pool_regions(fmap, (1, 1)).flatten().tolist() == [7.5]          # = the whole-frame mean


def _views_model(views):
    torch.manual_seed(0)
    return AnomalyGCN(in_dim=3, fc_dim=4, gcn_dims=(3, 2), dropout=0.0, adjacency="none", views=views).eval()


def test_views_max_is_the_most_anomalous_view_and_sample_averages_probabilities():
    x = torch.randn(2, 3, 5, 3)                                             # (B, V, T, D)
    per_view = torch.stack([_views_model("max")(x[:, v])["logits"] for v in range(3)], 1)   # (B, V, T)
    m = _views_model("max")
    out = m.forward_views(x)
    assert torch.allclose(out["logits"], per_view.max(1).values)
    best = per_view.argmax(1)                                               # (B, T)
    fc_views = torch.stack([m(x[:, v])["fc"] for v in range(3)], 1)         # (B, V, T, 4)
    assert torch.allclose(out["fc"][0, 2], fc_views[0, best[0, 2], 2])      # the winning view's activations
    assert torch.allclose(m.clip_scores(x[0]), torch.sigmoid(per_view[0].max(0).values))
    s = _views_model("sample")
    assert torch.allclose(s.forward_views(x)["scores"], torch.sigmoid(per_view).mean(1), atol=1e-6)
    assert torch.allclose(s.clip_scores(x[0]), torch.sigmoid(per_view[0]).mean(0))


def test_sparsity_loss_is_the_mean_score():
    from pipeline.model.losses import sparsity_loss
    assert sparsity_loss(torch.tensor([[0.2, 0.4], [0.0, 1.0]])).item() == pytest.approx(0.4)


def test_views_auto_follows_the_features_record():
    from pipeline.model.training import resolve_views
    assert resolve_views("auto", {"coverage": "grid", "grid": "2x2", "crops": 4}) == "max"
    assert resolve_views("auto", {"coverage": "full", "crops": 1}) == "sample"
    assert resolve_views("auto", {"crops": 10}) == "sample"          # a record from before coverage existed
    assert resolve_views("auto", None) == "sample"                    # RTFM's files: no record
    assert resolve_views("sample", {"coverage": "grid"}) == "sample"
