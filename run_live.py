"""The live recognizer: ``python run_live.py [options]`` (same as ``clipmg-live``; ``--help`` lists them).

With no options it runs the built-in demo: synthetic camera, synthetic keypoints, the synthetic
demo model, labels over ZeroMQ printed by a listener, an annotated video; it stops after 20 s.
"""

import sys

from clipmg.stream.supervisor import main

if __name__ == "__main__":
    sys.exit(main())
