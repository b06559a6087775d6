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
CIFAR_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, CHANNELS)  # one image as the readers hand it out (HWC)

# Binary version: CIFAR-10 records are <1 label byte><3072 pixel bytes>; CIFAR-100 records are
# <1 coarse label byte><1 fine label byte><3072 pixel bytes>.
CIFAR10_BINARY_RECORD = 1 + IMAGE_BYTES  # 3073
CIFAR100_BINARY_RECORD = 2 + IMAGE_BYTES  # 3074

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
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

# The small real CIFAR-10 sample bundled with the package (scripts/make_sample.py builds it from
# the real archive): 20 train and 10 test images a class, in the official python layout.
SAMPLE_NAME = "cifar-10-sample-python.tar.gz"
SAMPLE_MD5 = "57e52d0a649ab6ce4c69399e089ec9fd"

# --- The MNIST family: MNIST, Fashion-MNIST and Kuzushiji-MNIST (KMNIST) -------------------------
# All three ship as the same four IDX files (LeCun's format, http://yann.lecun.com/exdb/mnist/):
# a big-endian header, then the values row-major. The header is 2 zero bytes, a type code
# (0x08 = unsigned byte, the only one these datasets use), the number of dimensions, then one
# 4-byte size per dimension: images are (N, 28, 28), labels (N,). 60,000 train + 10,000 test.
IDX_TYPE_UBYTE = 0x08
IDX_IMAGE_DIMS, IDX_LABEL_DIMS = 3, 1
MNIST_SIZE = 28  # 28x28, one grey channel; 0 is the background, 255 the ink
# Largest IDX file (decompressed) or npz array cifarkit reads: KMNIST-49's 232,365 28x28 images
# are 182 MB, the largest of the family; a header that claims more is refused before anything is
# read or allocated.
MAX_IDX_BYTES = 256 * 1024 * 1024

# Class names as TFDS names them (tensorflow_datasets/image_classification/mnist.py): MNIST's are
# the digits; Fashion-MNIST's from its README (github.com/zalandoresearch/fashion-mnist); KMNIST's
# the romanised hiragana of each row (github.com/rois-codh/kmnist).
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
KMNIST_CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
MNIST_FAMILY_CLASSES = {"mnist": MNIST_CLASSES, "fashion_mnist": FASHION_MNIST_CLASSES, "kmnist": KMNIST_CLASSES}

# md5 of the official gzipped IDX files. MNIST: as torchvision's datasets/mnist.py lists them (the
# t10k pair also matches the copy in shared/data/mnist/); Fashion-MNIST: its README's table;
# KMNIST: torchvision's KMNIST resources (the files on codh.rois.ac.jp). The four file names are
# the same in all three, so the checksum (or failing that, the folder's name) tells them apart.
IDX_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "kmnist": {
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    },
}
# Keras's MNIST cache, ~/.keras/datasets/mnist.npz (x_train, y_train, x_test, y_test; uint8):
# the sha256 keras.datasets.mnist.load_data checks (keras/src/datasets/mnist.py, file_hash).
KERAS_MNIST_NPZ = "mnist.npz"
KERAS_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
