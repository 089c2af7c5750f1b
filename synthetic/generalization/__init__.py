"""Generalization track: Foret-style and PAC-Bayes-kl bounds, sharpness and flatness of MAML and
Sharp-MAML_up on family L2 (and E2 for flatness). See docs/generalization.md."""
