"""Constants shared across the library (one home for each)."""

# ImageNet statistics on [0, 1] images: the one normalisation used for training *and* testing (the authors'
# training script used other statistics than their test script; DESIGN.md §2).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The paper's multi-scale training sizes and test size.
TRAIN_SIZES = (224, 256, 288, 320, 352)
TEST_SIZE = 352
