"""The VS Code extension end to end, in a real VS Code: tests/e2e_vscode/run.mjs installs the
packaged .vsix into code-server on 127.0.0.1 and drives it with playwright-core in headless
Chromium (the steps are listed at the top of run.mjs: reject and accept from the keyboard, the
experiments view patched live, a setting changed mid-loop, a keep as a Hint mark without a
squiggle or a Problems entry, Apply Best into an unsaved buffer, Revert, a killed server,
Restricted Mode, no traceback in the server's log, a key set through the palette for the
anthropic agent in a window with no key in its environment). Screenshots: artifacts/e2e/.

Needs `scripts/install-vscode-deps.sh` (Node 24, code-server, Chromium, the built .vsix). In CI
(`CI` set) a missing code-server fails the test; elsewhere it skips with the command to run.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools"
NODE = TOOLS / "node24" / "bin" / "node"
CODE_SERVER = TOOLS / "code-server" / "node_modules" / "code-server" / "out" / "node" / "entry.js"
DRIVER = ROOT / "tests" / "e2e_vscode" / "run.mjs"
ARTIFACTS = ROOT / "artifacts" / "e2e"
TIMEOUT_S = 540


@pytest.mark.timeout(TIMEOUT_S + 30)
def test_extension_in_code_server() -> None:
    if not CODE_SERVER.is_file():
        message = (
            f"code-server is not installed ({CODE_SERVER.relative_to(ROOT)} is missing): "
            "run scripts/install-vscode-deps.sh"
        )
        if os.environ.get("CI"):
            pytest.fail(message)  # never skipped in CI: the editor's face would go untested
        pytest.skip(message)
    missing = [
        str(path.relative_to(ROOT))
        for path in (
            NODE,
            ROOT / "vscode-extension" / "ratchet.vsix",
            ROOT / "tests" / "e2e_vscode" / "node_modules" / "playwright-core",
        )
        if not path.exists()
    ]
    assert not missing, (
        f"code-server is installed but {', '.join(missing)} is not: "
        "run scripts/install-vscode-deps.sh"
    )
    # Once the server side of issue 12 is in the package (the loop in a process of its own, the
    # lenses and hints from the server), its steps are required, not detected.
    loop_process = "1" if importlib.util.find_spec("ratchet.lsp.loop") else "0"
    face = "1" if importlib.util.find_spec("ratchet.lsp.marks") else "auto"
    env = {
        **os.environ,
        "RATCHET_E2E_LOOP_PROCESS": os.environ.get("RATCHET_E2E_LOOP_PROCESS", loop_process),
        "RATCHET_E2E_SERVER_FACE": os.environ.get("RATCHET_E2E_SERVER_FACE", face),
        "RATCHET_PYTHON": sys.executable,  # the interpreter with Ratchet (and these tests)
        "RATCHET_E2E_ARTIFACTS": str(ARTIFACTS),
        "RATCHET_E2E_TIMEOUT_S": str(TIMEOUT_S - 20),
    }
    result = subprocess.run(
        [str(NODE), str(DRIVER)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    output = (result.stdout + result.stderr)[-8000:]
    print(output)
    assert result.returncode == 0, (
        f"the end-to-end test failed (exit {result.returncode}); screenshots in "
        f"{ARTIFACTS.relative_to(ROOT)}/\n{output}"
    )
    shots = sorted(p.name for p in ARTIFACTS.glob("*.png"))
    for step in (
        "proposal-waiting",
        "tree-proposal",
        "experiments-view",
        "light-theme",
        "setting-mid-loop",
        "keep-no-squiggle",
        "apply-best-dirty",
        "reverted",
        "server-killed",
        "after-reload",
        "python-too-old",
        "restricted-mode",
        "select-project",
        "trusted",
        "api-key-none",
        "api-key-proposal",
    ):
        assert any(step in s for s in shots), (step, shots)
