import subprocess
import sys

import adaptloop

EXPECTED = {
    "AdaptloopError", "BudgetError", "DataError", "EvalSet", "Example", "LabelError",
    "NodeResult", "NotFoundError", "Pipeline", "TaskSpec", "WorkspaceError", "__version__",
}


def test_all_does_not_drift():
    assert set(adaptloop.__all__) == EXPECTED
    for name in adaptloop.__all__:
        assert hasattr(adaptloop, name)


def test_import_does_not_load_torch():
    code = "import sys, adaptloop, adaptloop.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
