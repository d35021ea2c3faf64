"""The study's stages (ITT, target fine-tuning, evaluation) and the artifact store they share."""
