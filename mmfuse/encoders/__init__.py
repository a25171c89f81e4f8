"""Every model the engine loads, behind one protocol: CLIP (visual), CLAP (audio), the dense text embedder,
Whisper (ASR) and rapidocr (OCR). Each module imports its model library lazily."""
