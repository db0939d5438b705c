# Corpus locations. Each can be overridden by an environment variable of the same name.
# Flickr8k: root holding the images (Flicker8k_Dataset/ or Images/), the text files (Flickr8k_text/ or at
# the root) and flickr_audio/ (wavs/, wav2capt.txt, wav2spk.txt).
FLICKR8K=${FLICKR8K:-downloads/flickr8k}
# SpokenCOCO: folder with SpokenCOCO_train.json, SpokenCOCO_val.json and wavs/.
SPOKENCOCO=${SPOKENCOCO:-downloads/SpokenCOCO}
# MSCOCO 2014 images: folder with train2014/ and val2014/.
MSCOCO=${MSCOCO:-downloads/mscoco}
# Karpathy split file of COCO (dataset_coco.json).
KARPATHY_COCO=${KARPATHY_COCO:-downloads/dataset_coco.json}
