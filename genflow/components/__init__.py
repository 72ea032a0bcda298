"""The core's own components (the linear path, the MLP backbone, shared layers), the built-in
plugin that registers them, and ``build``: config -> components, the one place factories are called."""
