"""The captioner model: shapes, conditioning, frozen encoder, and that attention can read a side."""

from __future__ import annotations

import pytest
import torch

from cxreader.errors import ConfigError
from cxreader.models import create_model
from cxreader.models.captioner import (
    COORD_CHANNELS,
    CaptionDecoder,
    Captioner,
    coordinate_grid,
    sequence_loss,
)


def _decoder(**kwargs) -> CaptionDecoder:
    options = {"embed_dim": 16, "hidden_dim": 32, "attention_dim": 16, "dropout": 0.0, **kwargs}
    return CaptionDecoder(12, 8, **options)


def test_coordinate_grid_runs_left_to_right_then_down():
    grid = coordinate_grid(2, 3)
    assert grid.shape == (6, 2)
    assert grid[0].tolist() == [-1.0, -1.0]  # top-left
    assert grid[2].tolist() == [1.0, -1.0]  # top-right: x grows first (row-major, as flatten(2))
    assert grid[5].tolist() == [1.0, 1.0]
    assert coordinate_grid(1, 1).tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("attention", [True, False])
def test_decoder_shapes(cell: str, attention: bool):
    torch.manual_seed(0)
    decoder = _decoder(cell=cell, attention=attention)
    features = torch.randn(3, 8, 2, 4)
    memory = decoder.memory(features)
    assert memory.values.shape == (3, 8, 8 + COORD_CHANNELS)
    assert memory.pooled.shape == (3, 8 + COORD_CHANNELS)
    state = decoder.init_state(memory)
    assert len(state) == (2 if cell == "lstm" else 1)
    logits, state, alpha = decoder.step(torch.tensor([1, 1, 1]), state, memory)
    assert logits.shape == (3, 12)
    if attention:
        assert alpha.shape == (3, 8)
        assert torch.allclose(alpha.sum(dim=1), torch.ones(3))
    else:
        assert alpha is None
    inputs = torch.tensor([[1, 4, 5, 6], [1, 7, 0, 0], [1, 4, 2, 0]])
    assert decoder(memory, inputs).shape == (3, 4, 12)


def test_text_only_memory_uses_the_learned_null_image():
    decoder = _decoder()
    memory = decoder.memory(None, batch_size=5)
    assert memory.values.shape == (5, 1, 8 + COORD_CHANNELS)
    assert decoder(memory, torch.ones(5, 3, dtype=torch.long)).shape == (5, 3, 12)
    with pytest.raises(ValueError, match="batch_size"):
        decoder.memory(None)
    with pytest.raises(ValueError, match="shape"):
        decoder.memory(torch.randn(2, 5, 2, 2))


def test_bad_configuration_is_refused():
    with pytest.raises(ConfigError, match="cell"):
        _decoder(cell="transformer")
    encoder = create_model("densenet_small")
    with pytest.raises(ConfigError, match="feature channels"):
        Captioner(encoder, _decoder())


def test_registered_captioners_and_frozen_encoder():
    model = create_model("captioner_lstm", vocab_size=10, embed_dim=8, hidden_dim=16, attention_dim=8)
    assert isinstance(model, Captioner) and model.decoder.cell_type == "lstm"
    assert create_model("captioner_gru", vocab_size=10).decoder.cell_type == "gru"
    assert not any(p.requires_grad for p in model.encoder.parameters())
    model.train()
    assert model.training and not model.encoder.training  # frozen batch-norm statistics
    images = torch.randn(2, 3, 32, 32)
    inputs = torch.tensor([[1, 5, 6], [1, 7, 8]])
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    logits = model(images, inputs)
    assert logits.shape == (2, 3, 10)
    sequence_loss(logits, torch.tensor([[5, 6, 2], [7, 8, 2]])).backward()
    optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
    probabilities = model.classify(model.encode(images))
    assert probabilities.shape == (2, 14) and bool(((probabilities >= 0) & (probabilities <= 1)).all())


def test_sequence_loss_ignores_padding():
    logits = torch.zeros(1, 3, 5)
    logits[0, 0, 4] = 10.0
    targets = torch.tensor([[4, 0, 0]])
    assert float(sequence_loss(logits, targets)) < 1e-3  # the two padded positions do not count


def test_attention_reads_the_side_of_the_evidence():
    """A bright spot in the left or right half of a feature map must give the matching side token.

    Pooled features carry no position, so this needs the attention and its coordinate channels.
    """
    torch.manual_seed(0)
    decoder = CaptionDecoder(8, 4, embed_dim=16, hidden_dim=32, attention_dim=16, dropout=0.0)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    right, left = 5, 6  # image left half = patient's right

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.rand(n, 4, 3, 4) * 0.1
        sides = torch.randint(0, 2, (n,))
        rows, cols = torch.randint(0, 3, (n,)), torch.randint(0, 2, (n,)) + 2 * sides
        features[torch.arange(n), :, rows, cols] += 1.0
        targets = torch.where(sides == 0, torch.tensor(right), torch.tensor(left))
        return features, targets

    for _ in range(150):
        features, targets = batch(32)
        inputs = torch.stack(
            [torch.full_like(targets, 1), torch.full_like(targets, 4)], dim=1
        )  # <bos> finding
        logits = decoder(decoder.memory(features), inputs)
        loss = sequence_loss(logits[:, 1:], targets[:, None])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    decoder.eval()
    features, targets = batch(64)
    inputs = torch.stack([torch.full_like(targets, 1), torch.full_like(targets, 4)], dim=1)
    with torch.no_grad():
        predicted = decoder(decoder.memory(features), inputs)[:, 1].argmax(dim=1)
    assert float((predicted == targets).float().mean()) >= 0.95
