"""camvid_utils: the reusable pieces of the CamVid segmentation tutorial.

Modules, one concept each: ``data`` (the dataset), ``transforms`` (joint augmentation), ``model``
(U-Net), ``losses`` (focal loss), ``metrics`` (confusion-matrix IoU), ``training`` (loops and
config), ``checkpoint`` (saving and loading), ``inference``, ``viz`` (drawing), ``runtime``
(device, precision, seeds, smoke switch), ``export`` (ONNX for onnxruntime), ``distributed``
(training on several processes with torchrun), ``cli`` (the command line).
"""

__version__ = "0.1.0"
