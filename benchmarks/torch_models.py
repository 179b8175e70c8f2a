"""PyTorch twins of the neurojax benchmark models (same layers, same sizes).

Used only by ``benchmarks/train_step.py`` as the reference; PyTorch is an
optional benchmark extra (``pip install torch==2.13.0``), never a test
dependency.
"""
import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU())
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.head(x.mean(dim=(2, 3)))


class VGG11(nn.Module):
    """VGG-11 (configuration A) with BatchNorm, global pooling, linear head."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        layers, cin = [], 3
        for item in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, item, 3, 1, 1, bias=False), nn.BatchNorm2d(item),
                           nn.ReLU()]
                cin = item
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


class SmallCNN(nn.Module):
    """conv32-relu-pool, conv64-relu-pool, dense 128, dense classes."""

    def __init__(self, num_classes: int = 10, size: int = 32):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2))
        self.hidden = nn.Linear(64 * (size // 4) ** 2, 128)
        self.head = nn.Linear(128, num_classes)

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.head(torch.relu(self.hidden(x)))


MODELS = {"resnet18": ResNet18, "vgg11": VGG11, "small_cnn": SmallCNN}
