"""The model rewrites the stages and the build use: channel pruning, low-rank
factorisation, and the QAT rewrites and BatchNormalization folds (``qat_rewrite``), all
on the one walker and rebuilder, ``edgec.pipeline.graph_rewrite`` (no stage logic here)."""
