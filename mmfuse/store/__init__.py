"""The index on disk: the LanceDB store of videos, segments, texts and vectors (every row tagged with the model that
made it), the ANN vector index, and the BM25 lexical index saved beside the tables."""
