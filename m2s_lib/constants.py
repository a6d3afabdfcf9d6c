"""Facts shared across the layers, one home for each: the normalisation, the paper's sizes, its tasks, the names
and label values of its datasets, and the image file types the loaders read.

They sit at the bottom of the package (no imports) because the paper layer (``metrics``' Table 1), the settings
(``config``) and the data layer all need them.
"""

# ImageNet statistics on [0, 1] images: the one normalisation used for training *and* testing (the authors'
# training script normalised with other statistics than their test script; one is enough).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The paper's multi-scale training sizes and test size.
TRAIN_SIZES = (224, 256, 288, 320, 352)
TEST_SIZE = 352

# The paper's four tasks: polyp (colonoscopy), COVID-19 lung infection (CT), breast lesions (BUSI), OCT layers (GOALS).
TASKS = ("polyp", "covid", "busi", "oct")

# The five polyp test sets of the PraNet split, in the order of PraNet's and the paper's Table 1.
POLYP_TEST_SETS = ("Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "CVC-300")

# GOALS label-image convention (challenge description): 0 RNFL, 80 GCIPL, 160 choroid, 255 anything else.
# Index = class id used by the library: 0 background, 1 RNFL, 2 GCIPL, 3 choroid.
GOALS_CLASS_VALUES = (255, 0, 80, 160)
GOALS_CLASS_NAMES = ("background", "RNFL", "GCIPL", "choroid")

# Image files the loaders read (any case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
