"""Facts about the CIFAR datasets, each with where it comes from.

Source: the dataset's home page (Krizhevsky, 2009, "Learning Multiple Layers of Features from Tiny
Images"), which documents both the python and the binary layouts.
"""

from __future__ import annotations

# Every CIFAR image is 32x32 RGB, stored channel-planar: 1024 red bytes, then 1024 green, then
# 1024 blue, each plane row-major. 3 * 32 * 32 = 3072 bytes an image.
IMAGE_SIZE = 32
CHANNELS = 3
IMAGE_BYTES = CHANNELS * IMAGE_SIZE * IMAGE_SIZE  # 3072

# Binary version: CIFAR-10 records are <1 label byte><3072 pixel bytes>; CIFAR-100 records are
# <1 coarse label byte><1 fine label byte><3072 pixel bytes>.
CIFAR10_BINARY_RECORD = 1 + IMAGE_BYTES  # 3073
CIFAR100_BINARY_RECORD = 2 + IMAGE_BYTES  # 3074

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR100_NUM_FINE = 100
CIFAR100_NUM_COARSE = 20

# Where the official archives live; `cifarkit download --url` points at a mirror instead.
OFFICIAL_BASE_URL = "https://www.cs.toronto.edu/~kriz/"

# md5 of the official files, as published on the dataset's home page (archives) and as the
# batches extract from them. A file with one of these names but another checksum is refused
# unless the user passes --no-verify.
ARCHIVE_MD5 = {
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530",
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
    "cifar-100-binary.tar.gz": "03b5dce01913d631647c71ecec9e9cb8",
}
# Batches of the extracted python versions, keyed by "<folder>/<file>".
EXTRACTED_MD5 = {
    "cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
    "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
    "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
    "cifar-10-batches-py/batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    "cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
    "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "cifar-100-python/meta": "7973b15100ade9c7d40fb424638fde48",
}

# Largest archive member cifarkit will read into memory. CIFAR-100's python `train` file is the
# biggest real member (about 155 MB); anything far larger is not a CIFAR batch.
MAX_MEMBER_BYTES = 256 * 1024 * 1024

# Both datasets hold 60,000 images (50,000 train + 10,000 test), in either version.
MAX_IMAGES = 60_000
# Bytes a dataset file may spend on one image: its pixels twice over (Python 3 writes bytes into
# protocol-2 pickles as UTF-8 text, two bytes for every pixel value over 127) plus 128 for its
# label(s), file name and pickle opcodes. The official files spend 3072 + 35 (python) or
# 3072 + 1-2 (binary); re-written at protocol 2 by Python 3, about 4,750.
MAX_BYTES_PER_IMAGE = 2 * IMAGE_BYTES + 128
# Most bytes the dataset files of one source may hold together, so that reading one never takes
# more memory than a CIFAR source can need (the official cifar-100-python holds 186.5 MB); 1 MiB
# more for class-name files.
MAX_DATASET_BYTES = MAX_IMAGES * MAX_BYTES_PER_IMAGE + 2**20  # 377 MB

# Pickle opcodes one file may execute: each builds at most one small object, so this bounds what
# a pickle can allocate beyond its own bytes. A real batch runs 3 to 30 opcodes an image (labels,
# file names, numpy integers rewritten by Python 3); 64 an image of the file's size, plus a
# constant for small files such as batches.meta.
PICKLE_OPS_PER_IMAGE = 64
PICKLE_OPS_BASE = 100_000

# Splits in the order they are exported.
SPLITS = ("train", "test")

# The small real CIFAR-10 sample bundled with the package (scripts/make_sample.py builds it from
# the real archive): 20 train and 10 test images a class, in the official python layout.
SAMPLE_NAME = "cifar-10-sample-python.tar.gz"
SAMPLE_MD5 = "57e52d0a649ab6ce4c69399e089ec9fd"
