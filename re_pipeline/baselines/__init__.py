"""The classic pipeline SpERT is compared with: BIO-tagging NER, then a relation
classifier over entity pairs with marker tokens (``ner``, ``relation``, ``pipeline``)."""
