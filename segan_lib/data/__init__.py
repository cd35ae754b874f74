from segan_lib.data.synthetic import SynthShapes, synth_batch
from segan_lib.data.transforms import PairedTransform
from segan_lib.data.folders import FolderDataset
from segan_lib.data.voc import VOCSegmentation
from segan_lib.data.cityscapes import CityscapesSegmentation
from segan_lib.data.ade20k import ADE20KSegmentation
from segan_lib.data.registry import DATASET_NAMES, build_dataset
from segan_lib.data.export import export_synthshapes
from segan_lib.data.split import LabelledSubset, UnlabelledImages, split_labelled
