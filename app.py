"""Launch the gansample web demo (as on a Hugging Face Space): ``python app.py [--port 7860 ...]``.

The demo lives in the package (``gansample.ui``); this file only starts it, as
``gansample app`` does.
"""

import sys

from gansample.cli import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
