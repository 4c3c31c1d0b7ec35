"""Issue 8: the unmasked graph and clustering, eq. 4's rules, the controls, the mechanism measures,
and how ``train.training_step`` wires the pieces (each wrong wiring must fail a test here)."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from pipeline.model import diagnostics as DG
from pipeline.model import clustering
from pipeline.model import losses
from pipeline.model import training
from pipeline import train as TR
from pipeline.model.clustering import (CrossBatchMemory, clustering_input, kmeans2, minority_pseudo_labels,
                                       normal_subspace, pseudo_labels, remove_subspace, random_pseudo_labels)
from pipeline.model.losses import batch_clustering_loss
from pipeline.common.metrics import ScoredVideo, frame_report
from pipeline.model.network import AnomalyGCN, build_model, centred_similarity_adjacency


# ---------------------------------------------------------------- the centred, masked similarity graph
def test_centred_similarity_by_hand():
    # video mean (1, .025); deviations (-1,-.025) x2, (1,-.025), (1,.075)
    x = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [2.0, 0.0], [2.0, 0.1]]])
    a = centred_similarity_adjacency(x)[0]
    assert torch.allclose(a[0], torch.tensor([0.5, 0.5, 0.0, 0.0]), atol=1e-6)        # cos 1 with its twin
    # cos of rows 2 and 3: (1 - .025 * .075) / (sqrt(1 + .025^2) sqrt(1 + .075^2)) = 0.9950187
    # softmax over {1, 0.9950187}: e / (e + e^0.9950187) = 0.5012453; opposite deviations (cos -1) masked
    assert torch.allclose(a[2], torch.tensor([0.0, 0.0, 0.5012453, 0.4987547]), atol=1e-6)
    assert torch.allclose(a.sum(1), torch.ones(4))


def test_centred_similarity_ignores_the_video_wide_component():
    # I3D-like features: a large shared component makes every raw cosine > 0.7, so HL-Net's graph is a
    # near-uniform average of the whole video; the centred graph keeps a lone segment to itself.
    torch.manual_seed(0)
    base = torch.rand(64) + 1.0
    x = base + 0.05 * torch.randn(1, 50, 64)                              # (1, 50, 64)
    from pipeline.model.network import similarity_adjacency
    assert similarity_adjacency(x)[0].max() < 0.05                        # every row near uniform
    a = centred_similarity_adjacency(x)[0]
    assert torch.allclose(torch.diagonal(a), torch.ones(50))              # noise deviations: only itself


def test_graph_is_built_from_undropped_features():
    # In training mode the similarity graph must equal the eval-mode one (no dropout inside it).
    torch.manual_seed(0)
    for gf in ("input", "fc"):
        m = AnomalyGCN(in_dim=16, dropout=0.6, graph_features=gf)
        x = torch.rand(2, 9, 16)
        seen = []
        import pipeline.model.network as M
        orig = M.centred_cosine
        M.centred_cosine = lambda src: seen.append(src.detach().clone()) or orig(src)
        try:
            m.train()(x)
            m.eval()(x)
        finally:
            M.centred_cosine = orig
        assert torch.equal(seen[0], seen[1]), gf


def test_forward_returns_activations_before_dropout():
    torch.manual_seed(0)
    m = AnomalyGCN(in_dim=16, dropout=0.6)
    x = torch.rand(2, 9, 16)
    out = m.train()(x)
    ref = torch.relu(m.fc(x))
    assert torch.allclose(out["fc"], ref)                                 # no zeroed / rescaled units


def test_build_model_defaults_of_old_checkpoints():
    m = build_model({"dropout": 0.6, "adjacency": "sum"}, 8)
    assert (m.similarity, m.graph_features) == ("hlnet", "fc")            # how old checkpoints were trained
    m = build_model({"similarity": "centred", "graph_features": "input"}, 8)
    assert (m.similarity, m.graph_features) == ("centred", "input")


# ---------------------------------------------------------------- eq. 4 rules and the controls
def test_pseudo_label_rules_by_hand():
    # 2 of 8 segments in cluster 1 with mean score .6, the other 6 at .4:
    # cosine rule: cos(s, y) = 1.2 / (|s| sqrt 2) = .8485/|s| < cos(s, 1-y) = 2.4 / (|s| sqrt 6) = .9798/|s|
    # -> the larger cluster is called anomalous (eq. 4's bias); the mean rule picks the higher mean.
    s = torch.tensor([0.6, 0.6, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4])
    y = torch.tensor([1, 1, 0, 0, 0, 0, 0, 0])
    assert pseudo_labels(s, y, "cosine").tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    assert pseudo_labels(s, y, "mean").tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert pseudo_labels(s, 1 - y, "mean").tolist() == [1, 1, 0, 0, 0, 0, 0, 0]   # labels' names don't matter


def test_random_pseudo_labels_rate_and_seed():
    a = random_pseudo_labels((50, 40), 0.3, torch.Generator().manual_seed(0))
    b = random_pseudo_labels((50, 40), 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and abs(float(a.mean()) - 0.3) < 0.03


def test_clustering_input_removes_each_videos_mean():
    pattern = torch.randn(1, 6, 4)
    h = torch.cat([pattern + 5.0, pattern - 2.0])                         # two videos, different offsets
    z = clustering_input(h, center=True)
    assert torch.allclose(z[0], z[1], atol=1e-6)
    assert torch.allclose(z.norm(dim=-1), torch.ones(2, 6))
    assert not torch.allclose(clustering_input(h, center=False)[0], clustering_input(h, center=False)[1])


def test_way4_memory_comes_on_the_batch_device_and_dtype():
    mem = CrossBatchMemory("4")
    mem.store(torch.randn(2, 3))
    mem.end_epoch()
    like = torch.empty(5, 3, device="meta", dtype=torch.float64)
    extra = mem.extra_points(like)
    assert extra.device.type == "meta" and extra.dtype == torch.float64 and extra.shape == (2, 3)
    x = torch.randn(6, 3, dtype=torch.float64)
    assign, c = kmeans2(x, x[:2], extra=mem.extra_points(x))
    assert c.dtype == torch.float64 and assign.shape == (6,)


# ---------------------------------------------------------------- the mechanism measures
def test_diagnostics_by_hand():
    assign = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])
    truth = torch.tensor([[1, 0, 0, 0], [0, 0, 1, 1]])
    # cluster 1: {1, 0} -> max 1; cluster 0: {0,0,0,0,1,1} -> max 4; purity 5/8
    assert DG.cluster_purity(assign, truth) == pytest.approx(5 / 8)
    assert DG.single_cluster_share(assign) == pytest.approx(0.5)
    prec, rec = DG.precision_recall(assign, truth)                        # tp 1, predicted 2, true 3
    assert (prec, rec) == (pytest.approx(0.5), pytest.approx(1 / 3))
    scores = torch.tensor([[0.9, 0.1, 0.2, 0.3], [0.1, 0.2, 0.8, 0.1]])
    assert DG.topk_precision(scores, truth, 1) == pytest.approx(1.0)      # both top-1 picks anomalous
    # 10 clips -> 4 segments (spans 0:2, 2:5, 5:7, 7:10); clips 3..6 anomalous -> fractions 0, 2/3, 1, 0
    clip = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0], np.uint8)
    assert DG.segment_truth(clip, 4).tolist() == [0, 1, 1, 0]


def test_report_mean_scores_inside_outside_normal():
    a = ScoredVideo("a", 1, "Abuse", np.array([0.9, 0.7, 0.2, 0.4]), np.array([1, 1, 0, 0]))
    n = ScoredVideo("n", 0, "Normal", np.array([0.1, 0.3]), np.array([0, 0]))
    r = frame_report([a, n])
    assert r["mean_inside"] == pytest.approx(0.8) and r["mean_outside"] == pytest.approx(0.3)
    assert r["mean_normal"] == pytest.approx(0.2)


# ---------------------------------------------------------------- wiring of training_step
def _batch(seed=0, T=12, D=16, n=3):
    """n normal videos then n abnormal ones whose segments 2..4 carry a planted direction."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2 * n, T, D, generator=g)
    x[n:, 2:5, :4] += 3.0
    y = torch.tensor([0] * n + [1] * n)
    return x, y, n


def _cfg(**kw):
    kw.setdefault("bc", True)           # these tests exercise eq. 1 and 4-5, which are off by default
    kw.setdefault("bcg", True)
    return replace(training.TrainConfig(), dropout=0.0, **kw)


def _step(cfg, x, y, n, seed=0, capture=None, model_seed=0):
    torch.manual_seed(model_seed)
    model = training.model_from_config(cfg, x.shape[-1])
    mems = {k: CrossBatchMemory(cfg.cross_batch) for k in ("normal", "abnormal")}
    loss, parts = training.training_step(model, x, y, n, mems, cfg, torch.Generator().manual_seed(seed))
    return model, loss, parts


def test_eq1_normal_term_uses_normal_videos_and_abnormal_term_abnormal_ones():
    torch.manual_seed(0)
    T, n = 6, 2
    z = torch.randn(2 * n, T, 8)
    z[:n, :3] += 10.0                                                     # normal videos: far-apart clusters
    z = torch.nn.functional.normalize(z, dim=-1)
    cfg = _cfg(cross_batch="none", mu=0.5)
    mems = {k: CrossBatchMemory("none") for k in ("normal", "abnormal")}
    r = training.clustering_step(z, n, mems, cfg, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)                                   # replayed in the same order
    for kind, part in (("normal", z[:n]), ("abnormal", z[n:])):
        pts = part.reshape(-1, 8)
        _, c = kmeans2(pts, mems[kind].init_for(pts, g))
        d = torch.linalg.vector_norm(c[0] - c[1])
        assert float(r[f"d_{kind}"]) == pytest.approx(float(d), rel=1e-5), kind
    assert float(r["bc_normal"]) == pytest.approx(min(float(r["d_normal"]), 0.5), rel=1e-5)
    assert float(r["bc_abnormal"]) == pytest.approx(1 / float(r["d_abnormal"]), rel=1e-5)
    assert r["assign_abnormal"].shape == (n, T)


def test_boost_comes_from_the_abnormal_half_only(monkeypatch):
    x, y, n = _batch()
    seen = {}
    real = losses.kmax_loss_logits
    monkeypatch.setattr(training, "kmax_loss_logits", lambda z, lab, boost, a: seen.update(boost=boost) or real(z, lab, boost, a))
    for rule in ("cosine", "mean"):
        for labels in ("cluster", "ones", "random"):
            _step(_cfg(pseudo_rule=rule, pseudo_labels=labels), x, y, n)
            b = seen["boost"]
            assert b.shape == (2 * n, x.shape[1]) and not b[:n].any(), (rule, labels)   # normal videos never boosted
            if labels == "ones":
                assert b[n:].all()


def test_pseudo_labels_are_computed_from_abnormal_scores_and_clusters(monkeypatch):
    x, y, n = _batch()
    calls = []
    real = training.guided_boost
    monkeypatch.setattr(training, "guided_boost",
                        lambda s, a, c, g, nov=None: calls.append((s.detach().clone(), a.clone())) or real(s, a, c, g, nov))
    model, _, _ = _step(_cfg(), x, y, n)
    scores, assign = calls[0]
    with torch.no_grad():
        ref = model.train()(x)["scores"][n:]
    assert torch.allclose(scores, ref) and assign.shape == (n, x.shape[1])


@pytest.mark.parametrize("layer", ["fc", "gcn1", "gcn2"])
def test_cluster_layer_is_what_gets_clustered(monkeypatch, layer):
    x, y, n = _batch()
    seen = []
    real = clustering.clustering_input
    monkeypatch.setattr(training, "clustering_input", lambda h, *a: seen.append(h.detach().clone()) or real(h, *a))
    model, _, _ = _step(_cfg(cluster_layer=layer), x, y, n)
    with torch.no_grad():
        ref = model.train()(x)[layer]
    assert seen[0].shape == ref.shape and torch.allclose(seen[0], ref)


def test_each_switch_changes_the_computation():
    x, y, n = _batch()
    base = _cfg(alpha=1.3)
    _, loss, parts = _step(base, x, y, n)
    # --no-bc: the loss is the k-max loss alone
    _, l_nobc, p_nobc = _step(replace(base, bc=False), x, y, n)
    assert l_nobc.item() == pytest.approx(p_nobc["kmax"]) and parts["loss"] != pytest.approx(p_nobc["loss"])
    # lambda1 scales L_bc: L = L_kmax + lambda1 L_bc (eq. 3)
    assert parts["loss"] == pytest.approx(parts["kmax"] + base.lambda1 * parts["bc"], rel=1e-5)
    # --no-bcg: no boost -> a different k-max loss (boosted segments gain log alpha)
    _, _, p_nobcg = _step(replace(base, bcg=False), x, y, n)
    assert p_nobcg["kmax"] != pytest.approx(parts["kmax"]) and "boosted" not in p_nobcg
    # the controls change which segments are boosted
    _, _, p_ones = _step(replace(base, pseudo_labels="ones"), x, y, n)
    assert p_ones["boosted"] == 1.0 and parts["boosted"] < 1.0          # eq. 5's condition differs
    # --cluster-center none clusters other points: other centre distances
    _, _, p_nc = _step(replace(base, cluster_center="none"), x, y, n)
    assert p_nc["d_abnormal"] != pytest.approx(parts["d_abnormal"])
    # the graph options give other models
    _, _, parts = _step(replace(base, adjacency="learned"), x, y, n)          # both graphs in play
    for kw in (dict(similarity="centred"), dict(graph_features="fc"), dict(proximity="plain" if base.proximity == "gated" else "gated"), dict(adjacency="none")):
        _, _, p = _step(replace(base, **{"adjacency": "learned", **kw}), x, y, n)
        assert p["kmax"] != pytest.approx(parts["kmax"]), kw


def test_bc_gradient_reaches_the_backbone_through_the_wiring():
    x, y, n = _batch()
    cfg = _cfg(bcg=False, lambda1=1.0)
    model, loss, _ = _step(cfg, x, y, n)
    model_k, loss_k, _ = _step(replace(cfg, bc=False), x, y, n)
    loss.backward()
    loss_k.backward()
    assert not torch.allclose(model.fc.weight.grad, model_k.fc.weight.grad)


def test_training_step_logs_mechanism_metrics_with_truth():
    x, y, n = _batch()
    truth = torch.zeros(2 * n, x.shape[1], dtype=torch.uint8)
    truth[n:, 2:5] = 1
    torch.manual_seed(0)
    cfg = _cfg()
    model = training.model_from_config(cfg, x.shape[-1])
    mems = {k: CrossBatchMemory(cfg.cross_batch) for k in ("normal", "abnormal")}
    _, parts = training.training_step(model, x, y, n, mems, cfg, torch.Generator().manual_seed(0), truth)
    assert parts["anomaly_rate"] == pytest.approx(3 / 12)
    for k in ("purity", "pseudo_precision", "pseudo_recall", "topk_precision", "single_cluster", "boosted"):
        assert k in parts and 0.0 <= parts[k] <= 1.0, k
    # the planted direction is found: the centred clustering separates segments 2..4
    assert parts["purity"] == pytest.approx(1.0)


def test_paper_literal_flag_sets_the_literal_forms():
    args = TR.build_parser().parse_args(["--paper-literal", "--similarity", "centred"])
    cfg = TR.config_from_args(args)
    assert (cfg.similarity, cfg.graph_features, cfg.cluster_center, cfg.pseudo_rule) == \
        ("hlnet", "input", "none", "cosine")
    assert (cfg.proximity, cfg.normal_subspace, cfg.cluster_layer, cfg.bcg_gate) == ("plain", 0, "gcn1", 0.0)
    assert (cfg.adjacency, cfg.residual, cfg.standardize) == ("sum", False, False)   # literal means literal
    assert (cfg.bc, cfg.bcg, cfg.cross_batch) == (True, True, "1")                  # every part of the method
    help_text = TR.build_parser().format_help()
    assert "--no-residual --no-standardize" in " ".join(help_text.split())
    cfg = TR.config_from_args(TR.build_parser().parse_args([]))
    assert (cfg.similarity, cfg.cluster_center, cfg.bc, cfg.bcg, cfg.pseudo_rule) == ("hlnet", "video", False, False, "far")


def test_graph_layer_without_residual_is_the_plain_convolution():
    from pipeline.model.network import GraphConv
    torch.manual_seed(0)
    h = torch.randn(1, 3, 4)
    a = torch.softmax(torch.randn(1, 3, 3), -1)
    layer = GraphConv(4, 2, "sum", residual=False)
    assert layer.residual is None and not any("residual" in k for k in layer.state_dict())
    # H' = A H W + b with A = (A_sim + A_prox) / 2; here A_sim = A_prox = a
    expected = a @ (h @ layer.weight.weight.T + layer.weight.bias)
    assert torch.allclose(layer(h, a, a), expected, atol=1e-6)
    with_res = GraphConv(4, 2, "sum", residual=True)
    assert "residual.weight" in with_res.state_dict()


def test_gated_proximity_by_hand():
    from pipeline.model.network import gated_proximity_adjacency
    # video mean (1, 1); deviations (-1,-1), (1,-1), (0,2): cos(0,1) = 0 (kept), cos(0,2) = cos(1,2) = -0.7071 (cut)
    x = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]]])
    a = gated_proximity_adjacency(x)[0]
    w = math.exp(-1 / math.e)                                            # 0.692201
    assert torch.allclose(a[0], torch.tensor([1 / (1 + w), w / (1 + w), 0.0]), atol=1e-6)   # .590945 .409055 0
    assert torch.allclose(a[1], torch.tensor([w / (1 + w), 1 / (1 + w), 0.0]), atol=1e-6)
    assert torch.allclose(a[2], torch.tensor([0.0, 0.0, 1.0]))            # cut from both neighbours


def test_gated_proximity_keeps_an_event_from_spilling():
    # a strong event in clips 10..14 of a 30-clip video: no proximity weight crosses its edges
    torch.manual_seed(0)
    x = 0.01 * torch.randn(1, 30, 8)
    x[0, 10:15] += torch.tensor([1.0] * 4 + [0.0] * 4)
    from pipeline.model.network import gated_proximity_adjacency
    a = gated_proximity_adjacency(x)[0]
    inside = torch.zeros(30, dtype=torch.bool)
    inside[10:15] = True
    assert a[~inside][:, inside].sum() == 0 and a[inside][:, ~inside].sum() == 0
    assert torch.allclose(a.sum(1), torch.ones(30))


def test_pseudo_labels_one_decision_per_video_in_a_batch():
    # rows decided independently, as if one video at a time; a video wholly in one cluster is labelled
    # by its mean score (mean rule), whatever that cluster is called
    s = torch.tensor([[0.6, 0.6, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4],
                      [0.9, 0.8, 0.7, 0.9, 0.8, 0.7, 0.9, 0.8],
                      [0.1, 0.2, 0.1, 0.2, 0.1, 0.2, 0.1, 0.2]])
    y = torch.tensor([[1, 1, 0, 0, 0, 0, 0, 0], [0] * 8, [1] * 8])
    for rule in ("cosine", "mean"):
        batch = pseudo_labels(s, y, rule)
        assert torch.equal(batch[0], pseudo_labels(s[0], y[0], rule))
    mean = pseudo_labels(s, y, "mean")
    assert mean[1].tolist() == [1.0] * 8 and mean[2].tolist() == [0.0] * 8


def test_normal_subspace_and_its_removal_by_hand():
    # normal segments vary along x (+-2) and a little along y (+-1): the leading direction is x
    hn = torch.tensor([[[2.0, 0, 0], [-2.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]]])     # (1, 4, 3)
    v = normal_subspace(hn, 1)
    assert v.shape == (3, 1) and torch.allclose(v.abs().flatten(), torch.tensor([1.0, 0, 0]))
    assert torch.allclose(remove_subspace(torch.tensor([3.0, 4.0, 5.0]), v), torch.tensor([0.0, 4.0, 5.0]))
    v2 = normal_subspace(hn, 2)                                            # x and y: only z is left
    assert torch.allclose(remove_subspace(torch.tensor([3.0, 4.0, 5.0]), v2), torch.tensor([0.0, 0.0, 5.0]), atol=1e-6)


def test_clustering_input_without_the_normal_videos_variation_finds_the_anomaly():
    # normal video: segments alternate +-1 along x. Abnormal video: the same, plus z = 1 in its last two
    # segments (the anomaly). Centred, the abnormal segments are (+-1, 0, -+.5); without x they are
    # (0, 0, -.5), (0, 0, -.5), (0, 0, .5), (0, 0, .5) -> normalised (0, 0, -1) twice, (0, 0, 1) twice.
    h = torch.tensor([[[1.0, 0, 0], [-1.0, 0, 0], [1.0, 0, 0], [-1.0, 0, 0]],
                      [[1.0, 0, 0], [-1.0, 0, 0], [1.0, 0, 1.0], [-1.0, 0, 1.0]]])   # (2, 4, 3)
    z = clustering_input(h, center=True, normal_dims=1, n_normal=1)
    assert torch.allclose(z[1], torch.tensor([[0.0, 0, -1], [0, 0, -1], [0, 0, 1], [0, 0, 1]]), atol=1e-6)
    # with x left in, the x split (+-1) is larger than the anomaly's (+-.5): k-means would split on it
    z_plain = clustering_input(h, center=True)
    assert z_plain[1, 0, 0] == pytest.approx(1 / math.sqrt(1.25))
    # one normal video of 4 segments has a scatter of rank <= 3: at most 1 direction (half) is removed
    assert torch.allclose(clustering_input(h, True, normal_dims=3, n_normal=1), z)
    # and of a 3-wide layer at most 1 direction (half) is removed
    h2 = torch.cat([h, h], dim=1)                                          # 8 segments: rank bound 3 -> 3
    assert torch.allclose(clustering_input(h2, True, normal_dims=3, n_normal=1),
                          clustering_input(h2, True, normal_dims=1, n_normal=1))
    assign, _ = kmeans2(z[1], z[1, [0, 2]])
    assert assign.tolist() in ([0, 0, 1, 1], [1, 1, 0, 0])


def test_minority_rule_by_hand():
    y = torch.tensor([[0, 1, 1, 1], [1, 1, 0, 1]])                        # 2 of 8 in cluster 0: it is the anomaly
    assert minority_pseudo_labels(y).tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]
    assert minority_pseudo_labels(1 - y).tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]   # names don't matter
    tie = torch.tensor([[0, 1], [1, 0]])
    assert minority_pseudo_labels(tie).tolist() == [[0, 1], [1, 0]]        # a tie goes to cluster 1
    # one decision for the batch: the second video lies wholly in the larger cluster -> no label 1
    assert minority_pseudo_labels(torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]])).tolist() == [[1, 0, 0, 0], [0, 0, 0, 0]]
    # the scores are not used
    s = torch.rand(2, 4)
    assert torch.equal(pseudo_labels(s, y, "minority"), minority_pseudo_labels(y))


def test_normal_subspace_option_is_wired_and_checked():
    x, y, n = _batch()
    base = _cfg(cluster_layer="fc")
    _, _, parts = _step(base, x, y, n)
    _, _, p_sub = _step(replace(base, normal_subspace=4), x, y, n)
    assert p_sub["d_abnormal"] != pytest.approx(parts["d_abnormal"])      # other points are clustered
    _, _, p_min = _step(replace(base, pseudo_rule="minority"), x, y, n)
    assert p_min["boosted"] <= 0.5                                          # the smaller cluster is boosted
    with pytest.raises(ValueError, match="--normal-subspace must be >= 0"):
        training.TrainConfig(normal_subspace=-1).resolved()
    cfg = TR.config_from_args(TR.build_parser().parse_args(["--paper-literal", "--normal-subspace", "8"]))
    assert cfg.normal_subspace == 0


def test_bcg_gate_by_hand():
    d_n = torch.tensor(0.2)
    assert training.clusters_found_anomalies(d_n, torch.tensor(0.39), 2.0) is False   # 0.39 < 2 x 0.2
    assert training.clusters_found_anomalies(d_n, torch.tensor(0.40), 2.0) is True
    assert training.clusters_found_anomalies(d_n, torch.tensor(0.01), 0.0) is True    # 0: the paper, always


def test_bcg_gate_switches_eq5_off_for_the_batch():
    x, y, n = _batch()
    base = _cfg(alpha=1.3)
    _, _, p_on = _step(base, x, y, n)
    _, _, p_off = _step(replace(base, bcg_gate=1e9), x, y, n)             # never wide enough
    _, _, p_nobcg = _step(replace(base, bcg=False), x, y, n)
    assert p_on["guided"] == 1.0 and p_off["guided"] == 0.0 and p_off["boosted"] == 0.0
    assert p_off["kmax"] == pytest.approx(p_nobcg["kmax"]) and p_on["kmax"] != pytest.approx(p_off["kmax"])
    assert "pseudo_precision" not in p_off                                 # no truth given: nothing measured
    with pytest.raises(ValueError, match="--bcg-gate"):
        training.TrainConfig(bcg_gate=-1).resolved()


def test_nearest_centre_by_hand_and_against_distances():
    from pipeline.model.clustering import nearest_centre
    c = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    x = torch.tensor([[0.9, 5.0], [1.1, -3.0], [1.0, 7.0]])               # left of, right of, on the bisector x = 1
    assert nearest_centre(x, c).tolist() == [0, 1, 0]                       # a tie goes to centre 0
    g = torch.Generator().manual_seed(0)
    pts, cc = torch.randn(500, 16, generator=g), torch.randn(2, 16, generator=g)
    assert torch.equal(nearest_centre(pts, cc), torch.cdist(pts, cc).argmin(dim=1))


def test_far_rule_by_hand():
    from pipeline.model.clustering import far_pseudo_labels, novelty
    # normal videos (first 2) sit at (0, 0) and (2, 0): their mean m = (1, 0)
    h = torch.tensor([[[0.0, 0.0], [0.0, 0.0]],
                      [[2.0, 0.0], [2.0, 0.0]],
                      [[1.0, 3.0], [1.0, 0.5]],            # abnormal: novelty 3 and 0.5
                      [[1.0, 4.0], [2.0, 0.0]]])           # abnormal: novelty 4 and 1
    nov = novelty(h, 2)
    assert torch.allclose(nov[2:], torch.tensor([[3.0, 0.5], [4.0, 1.0]]))
    # cluster 0 holds the far segments (mean novelty 3.5) and is the larger... or smaller: it does not matter
    assign = torch.tensor([[0, 1], [0, 1]])
    assert far_pseudo_labels(assign, nov[2:]).tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert far_pseudo_labels(1 - assign, nov[2:]).tolist() == [[1.0, 0.0], [1.0, 0.0]]   # names don't matter
    big = torch.tensor([[0, 0], [0, 1]])                    # cluster 0 (3 of 4 segments, mean 2.5 > 1) is far
    assert far_pseudo_labels(big, nov[2:]).tolist() == [[1.0, 1.0], [1.0, 0.0]]          # unlike 'minority'
    assert far_pseudo_labels(torch.zeros(2, 2, dtype=torch.long), nov[2:]).sum() == 0      # one cluster: no label


def test_far_rule_wired_into_the_training_step():
    x, y, n = _batch()
    _, _, parts = _step(_cfg(cluster_layer="fc", pseudo_rule="far", bcg_gate=0.0), x, y, n)
    assert 0.0 <= parts["boosted"] <= 1.0 and parts["guided"] == 1.0
