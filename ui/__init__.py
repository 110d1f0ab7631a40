"""The Gradio app in parts: input components that pass values through unconverted (``inputs``), request
parsing into a checked ``Job`` (``parse``), the shared run slot, Stop and scratch files (``lab``), the
handlers as methods of one object (``handlers``), and the page with its wiring (``layout``).

``app.py`` is only the entry point; ``ui.layout.build_app`` builds the page."""
