"""U-Net: shapes for any input size, parameter counts, and that it can learn."""

import pytest
import torch

from camvid_utils.model import UNet, UNetConfig, count_parameters


@pytest.mark.parametrize("bilinear", [False, True])
@pytest.mark.parametrize("size", [(361, 479), (64, 96), (17, 33)])
def test_output_keeps_any_input_size(size, bilinear):
    torch.manual_seed(0)
    model = UNet(11, base_channels=4, depth=4, bilinear=bilinear).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 11, *size)


def test_parameter_counts_match_the_documented_ones():
    assert count_parameters(UNet(11, base_channels=64)) == pytest.approx(31.0e6, rel=0.01)
    assert count_parameters(UNet(11, base_channels=32)) == pytest.approx(7.8e6, rel=0.01)
    assert count_parameters(UNet(11, base_channels=24)) == pytest.approx(4.37e6, rel=0.01)
    assert count_parameters(UNet(11, base_channels=32, max_channels=256)) == pytest.approx(5.14e6, rel=0.01)


def test_config_round_trip_rebuilds_the_same_network():
    model = UNet(5, base_channels=8, depth=3, bilinear=True, max_channels=32)
    assert model.config.widths() == [8, 16, 32, 32]
    clone = UNet.from_config(vars(model.config).copy())
    clone.load_state_dict(model.state_dict())  # same keys and shapes
    assert clone.config == model.config == UNetConfig(5, 3, 8, 3, True, 32)


def test_wrong_input_gives_a_useful_error():
    model = UNet(3, base_channels=4, depth=2)
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="num_classes"):
        UNet(0)


@pytest.mark.slow  # one of the slowest tests: out of the short contributor run
def test_overfits_a_single_small_batch():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 40)
    # A target that needs spatial context: class depends on position and on the image.
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(40), indexing="ij")
    target = ((yy // 8 + xx // 10) % 3).expand(2, -1, -1).clone()
    target[1] = (target[1] + (x[1, 0] > 0).long()) % 3
    model = UNet(3, base_channels=8, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == target).float().mean().item()
    assert loss.item() < 0.1 and accuracy > 0.97
