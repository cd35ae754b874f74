from segan_lib.models.unet import DoubleConv, Down, Up, UNet, unet_shape_table
from segan_lib.models.discriminators import ConfidenceMapDiscriminator, LucDiscriminator, PatchGANDiscriminator, SeganCritic, patchgan_receptive_field
from segan_lib.models.toy import MinibatchStdDev, ToyDiscriminator, ToyGenerator
from segan_lib.models.generator import MaskDiscriminator, MaskGenerator, UpBlock, dcgan_init_, param_count
