"""The dependency rules: the shared numpy code and the runtime never load torch."""

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


def test_runtime_runs_a_bundle_without_torch(bundles, clips):
    code = (
        "import sys\n"
        "from r1omni_edge.engines import BundleRecognizer\n"
        f"result = BundleRecognizer.from_bundle({str(bundles['fp32'][1])!r}, backend='cpu')"
        f".recognize_file({str(clips['av'])!r}, max_new_tokens=4)\n"
        "assert result.label in result.probabilities and abs(sum(result.probabilities.values()) - 1) < 1e-6\n"
        "heavy = ('torch.', 'transformers', 'timm', 'r1omni_edge.model', 'r1omni_edge.export', 'r1omni_edge.train')\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith(heavy))\n"
        "assert not loaded, loaded\n"
        "print('clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"
