"""aMINT web demonstrator (the Hugging Face Space's app_file). Run: python app.py"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from amint.ui import build_app  # noqa: E402

demo = build_app()

if __name__ == "__main__":
    demo.launch()
