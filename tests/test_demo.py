"""`gateway demo` plays the whole story on loopback and leaves nothing behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_books_by_voice_delivers_the_sms_and_prints_the_kpis(tmp_path: Path) -> None:
    scratch_parent = tmp_path / "tmp"
    scratch_parent.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "ENCRYPTION_"))}
    # Where the demo's scratch folder goes; the project's own settings must not matter.
    env.update(TMPDIR=str(scratch_parent), ADMIN_API_KEY="x", DATABASE_PATH="/nonexistent/db")
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--callback-delay", "0.02"],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr

    # The call was found by ForwardedFrom, bridged to Vapi, and reported.
    assert "ForwardedFrom +33145678901" in out
    assert re.search(r"The gateway bridges it to Vapi call [0-9a-f-]{36}", out)
    assert "tenant found by forwarded_from, bridged, ended" in out
    assert "95 s, billed 2 min: 0.3000 €, Vapi cost 0.1104 € (0.12 USD), margin 0.1896 €" in out
    # The tool calls offered slots and booked one.
    assert re.search(r"check_availability for \d{4}-\d{2}-\d{2}:\n   “.+slots are free", out)
    assert "booked: “Booked for" in out
    assert re.search(r"Léa Martin \(\+33601020304\), \S+, booked by voice", out)
    # The confirmation SMS was delivered through the emulator's callbacks, then priced.
    assert "queued → sent → delivered" in out
    assert re.search(r"SMS to \+33601020304: “Bonjour Léa Martin, .+confirmé", out)
    assert (
        "delivered, 1 segment(s) GSM-7, billed 0.0700 €, provider cost 0.0073 € "
        "(-0.0079 USD at 0.92 €/USD), margin 0.0627 €"
    ) in out
    # The KPIs the tenant's API answers.
    assert "messages: 1 in all, 1 delivered (100.0 %)" in out
    assert "margin 0.0627 € (89.57 %)" in out
    assert "calls: 1 call(s), 1 bridged, 1 appointment(s) booked (conversion 100.0 %)" in out

    # Nothing left behind: not the scratch folder, not a file in the working directory.
    [scratch] = re.findall(r"scratch database in (\S+) \(removed at the end\)", out)
    assert Path(scratch).parent == scratch_parent
    assert not Path(scratch).exists()
    assert list(scratch_parent.iterdir()) == []
    assert list(cwd.iterdir()) == []
