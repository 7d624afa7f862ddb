"""train: the two-stream ConvNets of Simonyan & Zisserman (2014), trained and tested from flowprep shards.

The trainer never decodes videos or computes flow: it reads RGB frames and flow (rebuilt in pixels from each
shard's quantization parameters) only through ``flowprep.ShardSet``. Modules, in the order data flows:
    splits       official UCF-101 / HMDB-51 / folder split files -> (shard key, label)
    transforms   crops, flips (negating dx), normalisation
    data         spatial and temporal Datasets, the test protocol's clips
    models       CNN-M-2048, torchvision backbones, cross-modality init, multi-task heads
    distributed  torchrun / DDP, samplers
    engine       train_one_epoch, predict, checkpoints, metrics log
    fit, evaluate, fuse   the three verbs; cli   the command line
"""
