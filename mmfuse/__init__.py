"""mmfuse: fuse many retrievers and rerank with a VLM for text-to-video retrieval."""
