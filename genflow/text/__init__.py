"""Text conditioning: sentencepiece tokenizers, text encoders and the text-conditioned backbone wrapper."""
