"""Request parsing and answer shaping of the protocols clients already speak: Hugging Face
zero-shot, the Open Inference Protocol v2 (KServe, Triton) and OpenAI-style embeddings."""
