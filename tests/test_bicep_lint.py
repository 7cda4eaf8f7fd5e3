"""scripts/bicep_lint.py: the Bicep check that runs where no Bicep compiler can (make test).

It must reject what `az bicep build` rejects and checkov lets through (the duplicate
@description on backupCheckSchedule that issue #15 found), and pass the templates as they are.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
BROKEN_COMMIT = "656e792"  # the last commit with the duplicate decorator (issue #15)


def load_linter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bicep_lint", ROOT / "scripts" / "bicep_lint.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bicep_lint"] = module
    spec.loader.exec_module(module)
    return module


lint = load_linter()


def messages(text: str) -> list[str]:
    return [f"{f.line}: {f.message}" for f in lint.check_text(text, "t.bicep", base_dir=INFRA)]


BROKEN_SNIPPET = """
@description('Azure region for every resource created here.')
@description('NCRONTAB schedule of the Weaviate backup check (seconds first).')
param backupCheckSchedule string = '0 0 */6 * * *'

param location string = resourceGroup().location

output schedule string = '${backupCheckSchedule} in ${location}'
"""


def test_the_templates_pass() -> None:
    findings = lint.check_paths([INFRA])
    assert [str(f) for f in findings] == []
    assert len(list(INFRA.rglob("*.bicep"))) >= 3


def test_the_duplicate_description_of_issue_15_is_found() -> None:
    found = messages(BROKEN_SNIPPET)
    assert len(found) == 1, found
    assert found[0].startswith("3: duplicate @description decorator on param backupCheckSchedule")
    assert "BCP166" in found[0]
    fixed = BROKEN_SNIPPET.replace(
        "@description('NCRONTAB schedule of the Weaviate backup check (seconds first).')\n", ""
    )
    assert messages(fixed) == []


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_original_main_bicep_fails() -> None:
    shown = subprocess.run(
        ["git", "show", f"{BROKEN_COMMIT}:infra/main.bicep"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if shown.returncode != 0:
        pytest.skip(f"commit {BROKEN_COMMIT} is not in this clone")
    found = [f.message for f in lint.check_text(shown.stdout, "main.bicep")]
    assert any(m.startswith("duplicate @description decorator on param backupCheckSchedule") for m in found), found


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("param a string\noutput o string = b\n", "'b' is not declared"),
        ("param a string\nparam a int\noutput o string = a\n", "'a' is declared twice"),
        ("param a string\noutput o string = a\n@description('x')\n", "@description is attached to nothing"),
        ("param a string\noutput o string = resourcegroup().location\n", "resourcegroup() is not a Bicep function"),
        ("@minValue(1)\nparam a string\noutput o string = a\n", "@minValue needs an int parameter"),
        ("@maxLenght(3)\nparam a string\noutput o string = a\n", "unknown decorator @maxLenght"),
        ("param a string\nparam unused int = 1\noutput o string = a\n", "param unused is declared but never used"),
        ("param a string\noutput o string = a\nvar v = {\n  x: a\n", "syntax error"),
        ("param a string\noutput o string = '${a'\n", "syntax error"),
        ("var v = [for x in range(0, 3): y]\noutput o array = v\n", "'y' is not declared"),
        ("var v = filter([1], i => i > j)\noutput o array = v\n", "'j' is not declared"),
        (
            "module m 'modules/keyvault-secrets-user.bicep' = {\n  name: 'm'\n  params: {\n"
            "    keyVaultName: 'kv'\n    principalId: 'p'\n    roleDefinitionIdd: 'r'\n  }\n}\n",
            "has no parameter 'roleDefinitionIdd'",
        ),
        (
            "module m 'modules/keyvault-secrets-user.bicep' = {\n  name: 'm'\n  params: {\n"
            "    keyVaultName: 'kv'\n    principalId: 'p'\n  }\n}\n",
            "required parameter 'roleDefinitionId'",
        ),
        ("module m 'modules/nope.bicep' = {\n  name: 'm'\n}\n", "modules/nope.bicep does not exist"),
    ],
)
def test_each_kind_of_mistake_is_reported(snippet: str, expected: str) -> None:
    found = messages(snippet)
    assert any(expected in m for m in found), found


def test_valid_constructs_pass() -> None:
    snippet = """
targetScope = 'resourceGroup'

@description('one')
@allowed([
  'new'
  'existing'
])
param mode string = 'new'

@secure()
param secret string = ''

var names = [for (n, i) in ['a', 'b']: '${n}-${i}']
var picked = filter(names, n => n != 'a-0')
var obj = {
  'quoted-key': mode == 'new' ? 1 : 2
  nested: {
    list: [
      1
      2
    ]
  }
  safe: resourceGroup().?tags ?? {}
}

resource kv 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: 'kv'
}

resource r 'Microsoft.Storage/storageAccounts@2023-05-01' = if (mode == 'new' && !empty(secret)) {
  name: 'st${uniqueString(resourceGroup().id)}'
  location: resourceGroup().location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    accessTier: kv.properties.vaultUri == '' ? 'Cool' : 'Hot'
  }
}

output o array = picked
output n object = obj
output id string = r.id
"""
    assert messages(snippet) == []


def test_renderer_evaluates_vars_with_parameter_values() -> None:
    snippet = """
param mode string = 'new'
param names object = {
  a: 'x'
}
var base = [
  {
    name: 'A'
    value: names.a
  }
]
var extra = mode == 'new' ? [
  {
    name: 'B'
    value: '${names.a}-${uniqueString(resourceGroup().id)}'
  }
] : []
var all = concat(base, extra, filter([{ name: 'C', value: '' }], s => !empty(s.value)))
output o array = all
"""
    rendered = lint.Renderer(snippet, {}).value("all")
    assert [s["name"] for s in rendered] == ["A", "B"]
    assert isinstance(rendered[1]["value"], lint.Opaque)
    assert lint.Renderer(snippet, {"mode": "existing"}).value("all") == [{"name": "A", "value": "x"}]
