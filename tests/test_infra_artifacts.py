"""Static checks of what ships the app: Dockerfile, .dockerignore, Bicep, the deploy workflow.

Nothing here reaches Azure or a Docker engine; the files are read as text (and YAML/JSON).
scripts/lint_infra.sh runs the linters (hadolint, checkov, yamllint) on the same files.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
INFRA = ROOT / "infra"
MAIN_BICEP = INFRA / "main.bicep"
PARAMETERS = INFRA / "main.parameters.json"
HOST_JSON = ROOT / "host.json"
WORKFLOW = ROOT / ".github" / "workflows" / "deploy.yml"

BASE_IMAGE = "mcr.microsoft.com/azure-functions/python:4-python3.11"
QUEUE_NAME = "llm-router-requests"
ROLE_GUIDS = {
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Azure Service Bus Data Sender": "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
    "Azure Service Bus Data Receiver": "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            instructions.append((keyword.upper(), " ".join(args.split())))
    return instructions


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def excluded_by_dockerignore(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: a path is excluded when it, or a parent directory of it,
    matches a pattern; `**/` matches any number of leading directories. No `!` patterns here."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern):
                return True
            if pattern.startswith("**/"):
                tail = pattern[3:]
                last = prefix.rsplit("/", 1)[-1]
                if fnmatch.fnmatchcase(last, tail) or fnmatch.fnmatchcase(prefix, tail):
                    return True
    return False


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def all_bicep_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in bicep_files())


def bicep_block(text: str, header_pattern: str) -> str:
    """The text of the `{ ... }` block that follows the first match of header_pattern."""
    match = re.search(header_pattern, text)
    assert match, f"no Bicep declaration matches {header_pattern!r}"
    start = text.index("{", match.end() - 1)
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start : index + 1]
    raise AssertionError(f"unbalanced braces after {header_pattern!r}")


def bicep_property(block: str, name: str) -> str:
    match = re.search(rf"^\s*{re.escape(name)}:\s*(.+?)\s*$", block, flags=re.MULTILINE)
    assert match, f"property {name!r} not found in block"
    return match.group(1)


def iso8601_duration_seconds(value: str) -> int:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", value)
    assert match and value not in ("P", "PT"), f"not an ISO 8601 duration: {value!r}"
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def timespan_seconds(value: str) -> int:
    """.NET TimeSpan text as used in host.json: [d.]hh:mm:ss."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})", value)
    assert match, f"not a TimeSpan: {value!r}"
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def load_workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def workflow_triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    triggers = workflow.get("on", workflow.get(True))
    assert isinstance(triggers, dict), "workflow has no `on:` mapping"
    return triggers


def all_steps(workflow: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in workflow["jobs"].items() for step in job.get("steps", [])]


# --------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore
# --------------------------------------------------------------------------------------------


def test_dockerfile_uses_the_functions_python_base_image() -> None:
    froms = [args for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert froms == [BASE_IMAGE]


def test_dockerfile_sets_the_functions_environment() -> None:
    env: dict[str, str] = {}
    for keyword, args in dockerfile_instructions():
        if keyword == "ENV":
            for pair in args.split():
                key, _, value = pair.partition("=")
                env[key] = value
    assert env["AzureWebJobsScriptRoot"] == "/home/site/wwwroot"
    assert env["AzureFunctionsJobHost__Logging__Console__IsEnabled"] == "true"
    # the Python 3.11 worker needs init indexing for HTTP streaming (issue #15)
    assert env["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert env["PYTHON_ENABLE_INIT_INDEXING"] == "1"
    # /metrics aggregates every worker process
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    assert env["PROMETHEUS_MULTIPROC_DIR"] in DOCKERFILE.read_text(encoding="utf-8").split("mkdir -p", 1)[1]


def test_dockerfile_installs_dependencies_in_a_layer_before_the_code() -> None:
    instructions = dockerfile_instructions()

    def index_of(predicate: Any, what: str) -> int:
        for index, instruction in enumerate(instructions):
            if predicate(*instruction):
                return index
        raise AssertionError(f"Dockerfile has no {what}")

    copy_requirements = index_of(
        lambda kw, args: kw == "COPY" and args.split()[0] == "requirements.txt", "COPY requirements.txt"
    )
    pip_install = index_of(
        lambda kw, args: (
            kw == "RUN" and "pip install" in args and "--no-cache-dir" in args and "requirements.txt" in args
        ),
        "RUN pip install --no-cache-dir -r requirements.txt",
    )
    copy_code = index_of(lambda kw, args: kw == "COPY" and args == ". /home/site/wwwroot", "COPY . /home/site/wwwroot")
    assert copy_requirements < pip_install < copy_code
    # Nothing but requirements.txt is copied before the install, so code edits keep the cache.
    early_copies = [args for kw, args in instructions[:pip_install] if kw in {"COPY", "ADD"}]
    assert all(args.split()[0] == "requirements.txt" for args in early_copies), early_copies


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [args for keyword, args in dockerfile_instructions() if keyword == "USER"]
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_dockerignore_keeps_non_runtime_files_out() -> None:
    patterns = dockerignore_patterns()
    for entry in ["tests", ".venv*", ".data", "docs", "bench", ".git", ".ci", "infra", ".github"]:
        assert entry in patterns, f".dockerignore lacks {entry!r}"
    assert any("__pycache__" in pattern for pattern in patterns)

    for path in [
        "tests/test_x.py",
        ".venv/bin/python",
        ".venv-tools/bin/checkov",
        ".data/pg/base",
        "docs/deploy.md",
        "bench/run.py",
        ".git/HEAD",
        ".ci/run",
        "infra/main.bicep",
        ".github/workflows/deploy.yml",
        "shared/__pycache__/config.cpython-311.pyc",
        "local.settings.json",
    ]:
        assert excluded_by_dockerignore(path, patterns), f"{path} would be copied into the image"
    for path in ["function_app.py", "host.json", "requirements.txt", "shared/config.py", "shared/catalog.yaml"]:
        assert not excluded_by_dockerignore(path, patterns), f"{path} would be missing from the image"


# --------------------------------------------------------------------------------------------
# Bicep
# --------------------------------------------------------------------------------------------


def queue_block() -> str:
    return bicep_block(
        MAIN_BICEP.read_text(encoding="utf-8"),
        r"resource\s+\w+\s+'Microsoft\.ServiceBus/namespaces/queues@[\w-]+'\s*=\s*(?:if\s*\([^)]*\)\s*)?\{",
    )


def test_service_bus_queue_settings() -> None:
    block = queue_block()
    assert bicep_property(block, "requiresDuplicateDetection") == "true"
    assert bicep_property(block, "maxDeliveryCount") == "10"
    assert bicep_property(block, "deadLetteringOnMessageExpiration") == "true"
    assert bicep_property(block, "lockDuration") == "'PT5M'"
    # The queue is named by a parameter whose default is the app's queue name.
    name_expression = bicep_property(block, "name")
    if name_expression.startswith("'"):
        assert name_expression == f"'{QUEUE_NAME}'"
    else:
        default = re.search(
            rf"^param\s+{re.escape(name_expression)}\s+string\s*=\s*'([^']*)'",
            MAIN_BICEP.read_text(encoding="utf-8"),
            flags=re.MULTILINE,
        )
        assert default and default.group(1) == QUEUE_NAME


def test_queue_lock_duration_matches_host_json_lock_renewal() -> None:
    if not HOST_JSON.exists():
        pytest.skip("host.json does not exist yet: cannot compare lockDuration with maxAutoLockRenewalDuration")
    host = json.loads(HOST_JSON.read_text(encoding="utf-8"))
    renewal = host.get("extensions", {}).get("serviceBus", {}).get("maxAutoLockRenewalDuration")
    assert renewal, "host.json lacks extensions.serviceBus.maxAutoLockRenewalDuration"
    lock = bicep_property(queue_block(), "lockDuration").strip("'")
    assert iso8601_duration_seconds(lock) == timespan_seconds(renewal), (lock, renewal)


def test_role_assignments_use_the_built_in_role_ids() -> None:
    text = all_bicep_text()
    for role, guid in ROLE_GUIDS.items():
        assert guid in text, f"{role} ({guid}) is not in the Bicep"
    main = MAIN_BICEP.read_text(encoding="utf-8")
    role_ids = bicep_block(main, r"var\s+roleIds\s*=\s*\{")
    for role, guid in ROLE_GUIDS.items():
        key = re.search(rf"^\s*(\w+):\s*'{guid}'", role_ids, flags=re.MULTILINE)
        assert key, f"{role} is not in var roleIds"
        # Every role is used by a role assignment (directly or through the Key Vault module).
        assert re.search(rf"roleIds\.{key.group(1)}\b", main), f"{role} is declared but never assigned"
    assert main.count("Microsoft.Authorization/roleAssignments@") >= 3
    module = (INFRA / "modules" / "keyvault-secrets-user.bicep").read_text(encoding="utf-8")
    assert "Microsoft.Authorization/roleAssignments@" in module


def test_function_app_is_functions_on_container_apps() -> None:
    text = all_bicep_text()
    site = bicep_block(text, r"resource\s+\w+\s+'Microsoft\.Web/sites@[\w-]+'\s*=\s*(?:if\s*\([^)]*\)\s*)?\{")
    assert bicep_property(site, "kind") == "'functionapp,linux,container,azurecontainerapps'"
    for prop in [
        "managedEnvironmentId",
        "keyVaultReferenceIdentity",
        "minimumElasticInstanceCount",
        "functionAppScaleLimit",
        "linuxFxVersion",
    ]:
        bicep_property(site, prop)
    assert "'UserAssigned'" in site
    main = MAIN_BICEP.read_text(encoding="utf-8")
    assert re.search(r"^param\s+minReplicas\s+int\s*=\s*1\s*$", main, flags=re.MULTILINE)
    assert re.search(r"^param\s+maxReplicas\s+int\s*=\s*3\s*$", main, flags=re.MULTILINE)
    assert re.search(r"^param\s+cpuCores\s+string\s*=\s*'1\.0'\s*$", main, flags=re.MULTILINE)
    assert re.search(r"^param\s+memorySize\s+string\s*=\s*'2Gi'\s*$", main, flags=re.MULTILINE)


def test_app_settings_are_wired() -> None:
    main = MAIN_BICEP.read_text(encoding="utf-8")
    settings = set(re.findall(r"^\s*name:\s*'([A-Za-z0-9_]+)'\s*$", main, flags=re.MULTILINE))
    required = {
        "DATABASE_URL",
        "REDIS_URL",
        "WEAVIATE_URL",
        "WEAVIATE_API_KEY",
        "JWT_SECRET",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "GOOGLE_CLOUD_PROJECT_ID",
        "VERTEX_AI_LOCATION",
        "GOOGLE_APPLICATION_CREDENTIALS_JSON",
        "VERTEX_WIF_PROVIDER",
        "VERTEX_WIF_SERVICE_ACCOUNT",
        "VERTEX_WIF_ENTRA_AUDIENCE",
        "WEAVIATE_GRPC_HOST",
        "WEAVIATE_GRPC_PORT",
        "WEAVIATE_GRPC_SECURE",
        "PYTHON_ENABLE_INIT_INDEXING",
        "FUNCTIONS_WORKER_RUNTIME",
        "PROMETHEUS_MULTIPROC_DIR",
        "SERVICE_BUS_NAMESPACE",
        "ServiceBusConnection",
        "ServiceBusConnection__fullyQualifiedNamespace",
        "ServiceBusConnection__credential",
        "ServiceBusConnection__clientId",
        "SERVICE_BUS_QUEUE",
        "KEY_VAULT_URL",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
        "ENVIRONMENT",
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "AzureFunctionsJobHost__extensions__http__maxConcurrentRequests",
    }
    assert not required - settings, f"app settings missing: {sorted(required - settings)}"

    # Secrets come from Key Vault references, resolved with the user-assigned identity.
    for setting in ["DATABASE_URL", "REDIS_URL", "WEAVIATE_URL", "WEAVIATE_API_KEY", "JWT_SECRET"]:
        value = re.search(rf"name:\s*'{setting}'\s*\n\s*value:\s*(\S+)", main)
        assert value and value.group(1).startswith("kvRef."), f"{setting} is not a Key Vault reference"
    value = re.search(r"name:\s*'GOOGLE_APPLICATION_CREDENTIALS_JSON'\s*\n\s*value:\s*(\S+)", main)
    assert value and value.group(1).startswith("kvRef.")
    assert main.count("@Microsoft.KeyVault(SecretUri=") >= 6
    for secret in [
        "llm-router-database-url",
        "llm-router-redis-url",
        "llm-router-jwt-secret",
        "WEAVIATE-API-KEY",
        "WEAVIATE-URL",
        "llm-router-google-application-credentials",
        "llm-router-azure-client-secret",
    ]:
        assert f"'{secret}'" in main, f"Key Vault secret name {secret} is not in the template"
    for setting, expected in [
        ("ServiceBusConnection__credential", "'managedidentity'"),
        ("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "'true'"),
        ("ENVIRONMENT", "'production'"),
    ]:
        value = re.search(rf"name:\s*'{setting}'\s*\n\s*value:\s*(.+?)\s*$", main, flags=re.MULTILINE)
        assert value and value.group(1) == expected, (setting, value and value.group(1))


def test_storage_account_is_locked_down() -> None:
    storage = bicep_block(
        MAIN_BICEP.read_text(encoding="utf-8"),
        r"resource\s+\w+\s+'Microsoft\.Storage/storageAccounts@[\w-]+'\s*=\s*\{",
    )
    assert bicep_property(storage, "minimumTlsVersion") == "'TLS1_2'"
    assert bicep_property(storage, "allowBlobPublicAccess") == "false"
    assert bicep_property(storage, "supportsHttpsTrafficOnly") == "true"


def test_checkov_skips_carry_a_reason() -> None:
    for path in [*bicep_files(), DOCKERFILE, WORKFLOW]:
        for line in path.read_text(encoding="utf-8").splitlines():
            if "checkov:skip=" in line:
                assert re.search(r"checkov:skip=CKV\w*_\d+:\s*\S", line), f"{path.name}: skip without a reason: {line}"


def test_parameters_file_matches_the_template() -> None:
    main = MAIN_BICEP.read_text(encoding="utf-8")
    declared = dict(re.findall(r"^param\s+(\w+)\s+\w+(.*)$", main, flags=re.MULTILINE))
    parameters = json.loads(PARAMETERS.read_text(encoding="utf-8"))["parameters"]
    unknown = set(parameters) - set(declared)
    assert not unknown, f"main.parameters.json sets undeclared parameters: {sorted(unknown)}"
    required = {name for name, rest in declared.items() if "=" not in rest}
    assert required <= set(parameters), f"required parameters without a value: {sorted(required - set(parameters))}"


# --------------------------------------------------------------------------------------------
# GitHub workflow
# --------------------------------------------------------------------------------------------


def test_workflow_triggers_on_push_to_main_and_pull_requests() -> None:
    triggers = workflow_triggers(load_workflow())
    assert "main" in triggers["push"]["branches"]
    assert "pull_request" in triggers


def test_workflow_requests_an_oidc_token_and_little_else() -> None:
    workflow = load_workflow()
    assert workflow.get("permissions") == {"contents": "read"}
    scopes = [workflow.get("permissions") or {}] + [job.get("permissions") or {} for job in workflow["jobs"].values()]
    assert any(scope.get("id-token") == "write" for scope in scopes)
    assert all(scope != "write-all" for scope in scopes)


def test_workflow_logs_in_to_azure_with_oidc_from_repository_variables() -> None:
    logins = [step for _, step in all_steps(load_workflow()) if str(step.get("uses", "")).startswith("azure/login@")]
    assert logins, "no azure/login step"
    for step in logins:
        inputs = step.get("with", {})
        assert "creds" not in inputs and "client-secret" not in inputs
        for key in ["client-id", "tenant-id", "subscription-id"]:
            assert str(inputs.get(key, "")).replace(" ", "").startswith("${{vars."), (
                f"{key} is not a repository variable"
            )
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "client-secret" not in text
    assert "creds:" not in text


def test_workflow_runs_make_test() -> None:
    runs = [str(step.get("run", "")) for _, step in all_steps(load_workflow())]
    assert any(re.search(r"(^|\s)make test(\s|$)", run) for run in runs)


def test_deploy_job_is_gated_to_pushes_and_needs_the_tests() -> None:
    workflow = load_workflow()
    deploy_jobs = [
        (job_id, job)
        for job_id, job in workflow["jobs"].items()
        if any(str(step.get("uses", "")).startswith("azure/login@") for step in job.get("steps", []))
    ]
    assert deploy_jobs
    test_jobs = [
        job_id
        for job_id, job in workflow["jobs"].items()
        if any("make test" in str(step.get("run", "")) for step in job.get("steps", []))
    ]
    for job_id, job in deploy_jobs:
        condition = str(job.get("if", "")).replace('"', "'")
        assert "github.event_name == 'push'" in condition, f"job {job_id} is not gated to push events"
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        assert set(test_jobs) & set(needs), f"job {job_id} does not wait for the tests"
        assert not any("make test" in str(step.get("run", "")) for step in job.get("steps", []))


def test_workflow_builds_the_image_tagged_with_the_commit_and_deploys_it() -> None:
    workflow = load_workflow()
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "${{ github.sha }}" in text
    runs = "\n".join(str(step.get("run", "")) for _, step in all_steps(workflow))
    assert "docker build" in runs and "docker push" in runs
    assert "az acr login" in runs
    assert "az functionapp config container set" in runs or "az containerapp update" in runs


def test_workflow_actions_are_pinned() -> None:
    for _, step in all_steps(load_workflow()):
        uses = step.get("uses")
        if uses:
            name, _, ref = str(uses).partition("@")
            assert ref and ref not in {"main", "master", "latest"}, f"{name} is not pinned: {uses}"


def test_every_binding_setting_is_an_app_setting() -> None:
    """%SETTING% expressions in function_app.py bindings must exist as app settings in Azure,
    or the Functions host cannot index the function."""
    import re

    import function_app
    from devtools.localhost import index_functions

    idx = index_functions(function_app.app)
    source = (ROOT / "function_app.py").read_text()
    names = set(re.findall(r'"%([A-Za-z0-9_]+)%"', source))
    assert names >= {"SERVICE_BUS_QUEUE", "BACKUP_CHECK_SCHEDULE"}
    assert idx.timers and idx.service_bus
    bicep = (ROOT / "infra" / "main.bicep").read_text()
    for name in names:
        assert f"name: '{name}'" in bicep, f"{name} is bound in function_app.py but not set in infra/main.bicep"


def test_workflow_compiles_the_bicep_and_previews_the_deployment() -> None:
    workflow = load_workflow()
    test_runs = "\n".join(str(s.get("run", "")) for s in workflow["jobs"]["test"]["steps"])
    assert "az bicep build" in test_runs
    deploy_steps = [str(s.get("run", "")) for s in workflow["jobs"]["deploy"]["steps"]]
    what_if = next(i for i, run in enumerate(deploy_steps) if "az deployment group what-if" in run)
    build = next(i for i, run in enumerate(deploy_steps) if "docker build" in run)
    assert what_if < build, "the preview runs before anything is deployed"
    assert "az bicep build" in deploy_steps[what_if]
