"""The default backbone, written once: `clipserve train`, `clipserve serve` and their settings all
read it from here. OpenAI's weights need the QuickGELU variant of the architecture; a service on
plain ViT-B-16 would refuse checkpoints trained with the defaults. No torch import, so option
declarations can use it without slowing `--help`."""

DEFAULT_ARCH = "ViT-B-16-quickgelu"
DEFAULT_PRETRAINED = "openai"
