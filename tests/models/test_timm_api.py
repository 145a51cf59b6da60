"""The timm model API details timm's own suite checks, kept here so a regression shows without downloading it."""

import pytest
import timm
import torch
from timm.models import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import litvit  # noqa: F401
from litvit.models import create_backbone

TINY = {
    "litv2_s": dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8)),
    "lit_s": dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8)),
    "lit_ti": dict(embed_dims=(16, 32, 40, 64), depths=(1, 1, 2, 1)),
}


@pytest.mark.parametrize("name", list(TINY))
def test_device_and_dtype_factory_keywords(name):
    model = timm.create_model(name, device="meta", dtype=torch.float64, **TINY[name])
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    model.eval().reset_classifier(7)
    head = model.get_classifier()
    assert (head.weight.device.type, head.weight.dtype, head.training) == ("meta", torch.float64, False)
    with pytest.raises(TypeError):
        timm.create_model(name, not_an_argument=1, **TINY[name])


def test_backbones_take_device_and_dtype():
    backbone = create_backbone("litv2_s", task="seg", device="meta", dtype=torch.bfloat16)
    assert {(p.device.type, p.dtype) for p in backbone.parameters()} == {("meta", torch.bfloat16)}


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("keep", [1, 2])
def test_prune_below_last_stage(name, keep):
    model = timm.create_model(name, **TINY[name]).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        full = model.forward_intermediates(x, intermediates_only=True)
    assert model.prune_intermediate_layers(indices=[keep]) == [keep]
    assert model.num_features == model.head_hidden_size == full[keep].shape[1]
    with torch.no_grad():
        feats = model.forward_intermediates(x, indices=[keep], intermediates_only=True)
        torch.testing.assert_close(feats[0], full[keep])
        assert model(x).shape[-1] == model.num_features  # no head, no pooling: the pruned stage's map
    model.reset_classifier(5, "avg")  # a new head on the pruned trunk works and uses every parameter
    logits = model(x)
    assert logits.shape == (1, 5)
    logits.square().sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("name", list(TINY))
def test_fx_feature_extraction(name):
    model = timm.create_model(name, **TINY[name]).eval()
    tracer_kwargs = dict(leaf_modules=list(get_notrace_modules()), autowrap_functions=list(get_notrace_functions()))
    _, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    extractor = create_feature_extractor(model, return_nodes=[eval_nodes[-1]], tracer_kwargs=tracer_kwargs)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(next(iter(extractor(x).values())), model(x))


@pytest.mark.parametrize("name", ["litv2_s", "lit_s"])
def test_features_only_model_is_scriptable(name):
    model = timm.create_model(name, features_only=True, out_indices=(1, 3), **TINY[name]).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        for a, b in zip(scripted(x), model(x)):
            torch.testing.assert_close(a, b)
