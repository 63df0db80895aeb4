"""SpERT: span-based joint entity and relation extraction (Eberts & Ulges, ECAI 2020).

Modules, one job each: ``data`` (SpERT JSON, DocRED conversion, Document model
bridge), ``model`` (the network), ``sampling`` (training samples and batches),
``evaluator`` (SpERT's scoring), ``train``, ``predict`` and ``cli``.
"""
