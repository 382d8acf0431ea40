"""The subscriber web app served by `digest serve`."""
