"""The public API of ``medtwin``: every name in ``__all__`` resolves, and README's examples import only those."""

import re
import subprocess
import sys
from pathlib import Path

import medtwin

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_exported_name_resolves_to_its_defining_object():
    from medtwin.control.dosing import recommend_dose
    from medtwin.core.data import PatientData
    from medtwin.infer.personalize import personalize

    for name in medtwin.__all__:
        assert getattr(medtwin, name) is not None, name
    assert medtwin.personalize is personalize
    assert medtwin.PatientData is PatientData
    assert medtwin.recommend_dose is recommend_dose
    assert len(set(medtwin.__all__)) == len(medtwin.__all__)


def test_readme_imports_from_medtwin_are_exported():
    text = README.read_text()
    imported = set()
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        for one_line, in_parens in re.findall(r"^from medtwin import (?:([^(\n]+)$|\(([^)]*)\))", block, flags=re.M):
            imported.update(n.strip() for n in (one_line or in_parens).replace("\n", " ").split(",") if n.strip())
    assert {"personalize", "PatientData", "recommend_dose", "shipped_population_path", "simulate"} <= imported
    assert imported <= set(medtwin.__all__), sorted(imported - set(medtwin.__all__))


def test_import_medtwin_loads_no_inference_or_control_module():
    code = ("import sys, medtwin; heavy = [m for m in ('medtwin.infer.personalize', 'medtwin.twin', "
            "'medtwin.control.mpc', 'numpyro', 'arviz') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
