import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# what distribute.ray_session does before it imports Ray, for the tests that start Ray themselves
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
