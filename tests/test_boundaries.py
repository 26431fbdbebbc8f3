"""The dependency rules: the shared numpy code and the runtime never load torch."""

import subprocess
import sys


def _without_torch(code: str) -> None:
    """``code`` runs in a fresh interpreter and leaves torch unimported."""
    code = f"import sys\n{code}assert 'torch' not in sys.modules, 'torch was imported'\nprint('clean')\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"


def test_shared_modules_do_not_import_torch():
    _without_torch("import r1omni_edge.media, r1omni_edge.prompt, r1omni_edge.labels, r1omni_edge.config\n"
                   "import r1omni_edge.result, r1omni_edge.recognition\n"
                   "import numpy as np\n"
                   "r1omni_edge.media.log_mel(np.zeros(1600, np.float32))\n")


def test_engines_live_and_the_front_door_load_without_torch():
    _without_torch("import r1omni_edge.engines, r1omni_edge.engines.onnxruntime, r1omni_edge.engines.tensorrt\n"
                   "import r1omni_edge.live.run, r1omni_edge.live.web, r1omni_edge.live.overlay, r1omni_edge.open\n"
                   "import r1omni_edge.live.network, r1omni_edge.live.mqtt, r1omni_edge.http_service\n"
                   "import r1omni_edge.batch.job, r1omni_edge.batch.evaluate, r1omni_edge.pipeline\n")


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
