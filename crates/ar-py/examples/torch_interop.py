"""arrs and PyTorch: train with AR, then hand the weights to a torch.nn module (and back).

Needs torch (`pip install torch`); arrs itself does not depend on it.
"""

import numpy as np
import torch

import arrs

model = arrs.Model("4-16-3", input_shape=4, classes=3, seed=0)  # tanh hidden, linear output
trainer = arrs.Trainer(model, "ar", eta=0.1, steps=100, lr=0.05)

x = torch.randn(64, 4)
y = torch.randint(0, 3, (64,))
for _ in range(50):
    trainer.step(x.numpy(), y.numpy())  # torch tensors through .numpy(), no copy on the CPU

# The same structure in torch: arrs counts layers as a ModuleList of the weighted layers with
# each activation inside its layer (docs/models.md), so `layers.1.weight` is the second Linear.
net = torch.nn.Module()
net.layers = torch.nn.ModuleList([torch.nn.Linear(4, 16), torch.nn.Linear(16, 3)])
net.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=True)


def torch_forward(x):
    return net.layers[1](torch.tanh(net.layers[0](x)))


with torch.no_grad():
    ours = model.predict(x.numpy())
    theirs = torch_forward(x).numpy()
print("largest difference between arrs and torch outputs:", np.abs(ours - theirs).max())

# And back: torch's weights (after any torch training) into the arrs model.
model.load_state_dict({k: v.detach().numpy() for k, v in net.state_dict().items()})
