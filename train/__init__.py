"""train: the two-stream ConvNets of Simonyan & Zisserman (2014), trained and tested from flowprep shards.

The trainer never decodes videos or computes flow: its samples come from flowprep's loading layer
(``flowprep.loading``: datasets, crops, flips, stacking, the code -> pixel lookup) over a ``ShardSet``.
Modules, in the order data flows:
    config       every setting of fit and its default (FitConfig; test's are evaluate's TestConfig)
    splits       official UCF-101 / HMDB-51 / folder split files -> (shard key, label)
    models       CNN-M-2048, torchvision backbones, cross-modality init, multi-task heads
    distributed  torchrun / DDP: process group, the training sampler (flowprep.loading.sampling's), gathering
    engine       train_one_epoch, predict, checkpoints, metrics log; metrics (top-k, mean class accuracy,
                 confusion, score files); torchfile (a checkpoint read with its entries' CRCs checked first)
    fit, evaluate, fuse, table   the four verbs; cli   the command line
"""
