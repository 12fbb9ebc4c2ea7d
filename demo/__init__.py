"""The bundled demo: digit models (base + distilled student), their training scripts and the demo job."""
