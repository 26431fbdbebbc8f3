"""The dependency rules: the shared numpy code (media, prompt, labels, config, result) never loads torch."""

import subprocess
import sys


def test_shared_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import r1omni_edge.media, r1omni_edge.prompt, r1omni_edge.labels, r1omni_edge.config, r1omni_edge.result\n"
        "import numpy as np\n"
        "r1omni_edge.media.log_mel(np.zeros(1600, np.float32))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"
