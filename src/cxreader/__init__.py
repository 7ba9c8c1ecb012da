"""cxreader: a chest X-ray reader.

Reads the NIH ChestX-ray14 release (Wang et al., CVPR 2017), trains CheXNet (Rajpurkar et al., 2017:
ImageNet-initialised DenseNet-121 with 14 sigmoid outputs), evaluates it, and predicts on new studies.

cxreader is decision support for research and screening programmes, not a certified medical device.
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "cxreader is decision support for research and screening programmes, not a certified medical device."
)
