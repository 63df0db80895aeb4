"""Document-level relation extraction: the DocRED two-step model (Wang et al. 2019).

Step 1 decides for every ordered entity pair whether *some* relation holds; step 2,
a separate model of the same architecture, types the pairs that pass. The one-step
baseline scores the 96 types plus N/A at once; the optional "shared" variant runs
both steps in one model (output 0 is step 1, the rest step 2: one encoder pass).
Modules, one job each:

- ``data``: DocRED JSON <-> ``Document``, token-level features, padded batches
- ``sampling``: the 3 N/A : 1 related pair sampler of step 1
- ``model``: the encoder + pooling + BiLinear pair scorer (one class for every use)
- ``metrics``: DocRED's official F1 and Ign F1, step-1 P/R/F1, step-2 accuracy
- ``evaluate``: threshold tuning on dev and the evaluation report of a model
- ``train``: the training loop, best-epoch checkpoint, curves
- ``predict``: the saved model directory and batched inference for the pipeline
- ``cli``: ``re-pipeline docred train|evaluate|predict``
"""
