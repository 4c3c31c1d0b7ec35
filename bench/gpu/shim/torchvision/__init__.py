"""Stand-in for torchvision on a GPU machine that lacks it (benchmark only).

pytorchvideo.models.head imports ``torchvision.ops.RoIAlign`` at import time; the I3D
feature network never uses it. bench/gpu_extract.sh puts this folder on PYTHONPATH only
when ``import torchvision`` fails.
"""
