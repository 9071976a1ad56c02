"""Using a trained run: predict on new files, export to ONNX/TorchScript with a model card."""
