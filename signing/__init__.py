"""Electronic seals (电子印章) and the documents they seal: one module per format
(`jws_seal`, `pades`), the provincial timestamp authority (`tsa`), trust anchors and
validation (`trust`) and frozen verification reports in the vocabulary of ETSI EN 319 102-1
(`report`)."""
