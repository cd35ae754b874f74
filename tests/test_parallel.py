"""``in_processes``: runs in spawned processes, results matched to their tasks, and a clear error
when a script without a ``__main__`` guard starts workers."""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap

from segan_lib.experiments.parallel import in_processes


def test_every_task_comes_back_with_its_own_result():
    tasks = [(3,), (5,), (7,)]
    results = dict(in_processes(math.factorial, tasks, jobs=2, threads=1))
    assert results == {(3,): 6, (5,): 120, (7,): 5040}


def test_a_script_without_a_main_guard_gets_an_error_that_says_so(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        import math
        from segan_lib.experiments.parallel import in_processes
        print(list(in_processes(math.factorial, [(3,), (4,)], jobs=2, threads=1)))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "RuntimeError" in done.stderr and "if __name__ == \"__main__\":" in done.stderr
