#!/usr/bin/env bash
# The Entra ID app registrations the LLM Router needs, as code. Idempotent: run it again and it
# changes nothing that is already right (roles keep their IDs, assignments are not duplicated).
#
#   bash scripts/entra_app.sh                       # API app + roles + service principal
#   ASSIGN_INVOKE_TO=<object id> bash scripts/entra_app.sh
#
# Creates (or finds, by identifier URI):
#   1. The API app callers get tokens for: identifier URI $APP_ID_URI (api://llm-router), app roles
#      LLMRouter.Invoke, LLMRouter.Admin, LLMRouter.Ops (users and applications) and
#      LLMRouter.PlatformAdmin (users), and its service principal (the "enterprise application"
#      that role assignments attach to). AZURE_APP_ID_URI in the app settings = $APP_ID_URI.
#   2. The audience app for Vertex AI federation, $WIF_APP_ID_URI (api://llm-router-gcp-wif), with a
#      service principal: the managed identity asks Entra ID for a token *for* it, so it must exist
#      in the tenant (else AADSTS500011), and Google's provider allows exactly this audience.
#   3. Example assignments, when asked: ASSIGN_INVOKE_TO / ASSIGN_ADMIN_TO / ASSIGN_OPS_TO /
#      ASSIGN_PLATFORM_ADMIN_TO = object IDs of users, groups or service principals (a calling
#      app's service principal, a managed identity), space-separated.
#
# Needs: az (signed in as someone who may create app registrations: Application Developer or
# Application Administrator), jq. Prints the IDs to put in the parameters file.
set -euo pipefail

APP_ID_URI="${APP_ID_URI:-api://llm-router}"
APP_NAME="${APP_NAME:-llm-router-api}"
WIF_APP_ID_URI="${WIF_APP_ID_URI:-api://llm-router-gcp-wif}"
WIF_APP_NAME="${WIF_APP_NAME:-llm-router-gcp-wif}"
GRAPH="https://graph.microsoft.com/v1.0"

# Role value -> fixed ID (used only when the role does not exist yet; an existing role keeps its
# ID, because Entra ID refuses to change or drop an enabled role) and allowed member types.
ROLES_JSON='[
  {"value": "LLMRouter.Invoke", "id": "5b2a0e0c-6f0e-4a53-9d3a-1f6e2f3c7a01", "types": ["User", "Application"],
   "name": "Invoke the router", "description": "Call chat completions, routing decisions and jobs."},
  {"value": "LLMRouter.Admin", "id": "5b2a0e0c-6f0e-4a53-9d3a-1f6e2f3c7a02", "types": ["User", "Application"],
   "name": "Administer routing", "description": "Manage the routing examples of its own tenant."},
  {"value": "LLMRouter.Ops", "id": "5b2a0e0c-6f0e-4a53-9d3a-1f6e2f3c7a03", "types": ["User", "Application"],
   "name": "Operate the router", "description": "Read detailed health and Prometheus metrics."},
  {"value": "LLMRouter.PlatformAdmin", "id": "5b2a0e0c-6f0e-4a53-9d3a-1f6e2f3c7a04", "types": ["User"],
   "name": "Platform administrator", "description": "Cross-tenant administration of the platform."}
]'

log() { printf '%s\n' "$*" >&2; }

# ensure_app <identifier uri> <display name> -> prints the appId
ensure_app() {
    local uri="$1" name="$2" app_id
    app_id="$(az ad app list --filter "identifierUris/any(u:u eq '${uri}')" --query "[0].appId" --output tsv)"
    if [[ -z "$app_id" ]]; then
        log "creating app registration ${name} (${uri})"
        app_id="$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg \
            --query appId --output tsv)"
        az ad app update --id "$app_id" --identifier-uris "$uri"
    else
        log "app registration ${uri} exists: ${app_id}"
    fi
    printf '%s' "$app_id"
}

# ensure_sp <appId> -> prints the service principal's object ID
ensure_sp() {
    local app_id="$1" sp_id
    sp_id="$(az ad sp list --filter "appId eq '${app_id}'" --query "[0].id" --output tsv)"
    if [[ -z "$sp_id" ]]; then
        log "creating the service principal of ${app_id}"
        sp_id="$(az ad sp create --id "$app_id" --query id --output tsv)"
    fi
    printf '%s' "$sp_id"
}

# ensure_roles <appId>: the four roles, existing ones (and any others) kept as they are
ensure_roles() {
    local app_id="$1" existing merged file
    existing="$(az ad app show --id "$app_id" --query appRoles --output json)"
    merged="$(jq -n --argjson have "$existing" --argjson want "$ROLES_JSON" '
        ($have | map({(.value): .}) | add // {}) as $by_value
        | $have + [ $want[] | select($by_value[.value] == null) | {
            allowedMemberTypes: .types, description: .description, displayName: .name,
            id: .id, isEnabled: true, value: .value } ]')"
    if [[ "$(jq 'length' <<<"$merged")" == "$(jq 'length' <<<"$existing")" ]]; then
        log "app roles already present"
        return 0
    fi
    file="$(mktemp)"
    printf '%s' "$merged" >"$file"
    az ad app update --id "$app_id" --app-roles "@${file}"
    rm -f "$file"
    log "app roles: $(jq -r '[.[].value] | join(", ")' <<<"$merged")"
}

# assign <resource sp object id> <role value> <principal object ids...>
assign() {
    local resource="$1" role="$2" role_id principal
    shift 2
    role_id="$(az ad sp show --id "$resource" --query "appRoles[?value=='${role}'].id | [0]" --output tsv)"
    for principal in "$@"; do
        if az rest --method GET \
            --uri "${GRAPH}/servicePrincipals/${resource}/appRoleAssignedTo" \
            --query "value[?principalId=='${principal}' && appRoleId=='${role_id}'] | [0].id" \
            --output tsv | grep -q .; then
            log "${role} already assigned to ${principal}"
            continue
        fi
        az rest --method POST --uri "${GRAPH}/servicePrincipals/${resource}/appRoleAssignedTo" \
            --headers "Content-Type=application/json" \
            --body "{\"principalId\": \"${principal}\", \"resourceId\": \"${resource}\", \"appRoleId\": \"${role_id}\"}" \
            --output none
        log "assigned ${role} to ${principal}"
    done
}

api_app_id="$(ensure_app "$APP_ID_URI" "$APP_NAME")"
ensure_roles "$api_app_id"
api_sp_id="$(ensure_sp "$api_app_id")"

wif_app_id="$(ensure_app "$WIF_APP_ID_URI" "$WIF_APP_NAME")"
wif_sp_id="$(ensure_sp "$wif_app_id")"

read -r -a invoke <<<"${ASSIGN_INVOKE_TO:-}"
read -r -a admin <<<"${ASSIGN_ADMIN_TO:-}"
read -r -a ops <<<"${ASSIGN_OPS_TO:-}"
read -r -a platform <<<"${ASSIGN_PLATFORM_ADMIN_TO:-}"
[[ ${#invoke[@]} -gt 0 ]] && assign "$api_sp_id" LLMRouter.Invoke "${invoke[@]}"
[[ ${#admin[@]} -gt 0 ]] && assign "$api_sp_id" LLMRouter.Admin "${admin[@]}"
[[ ${#ops[@]} -gt 0 ]] && assign "$api_sp_id" LLMRouter.Ops "${ops[@]}"
[[ ${#platform[@]} -gt 0 ]] && assign "$api_sp_id" LLMRouter.PlatformAdmin "${platform[@]}"

cat <<EOF
API app:             ${APP_ID_URI}  appId ${api_app_id}  service principal ${api_sp_id}
                     -> parameter azureAppIdUri = ${APP_ID_URI}
Vertex WIF audience: ${WIF_APP_ID_URI}  appId ${wif_app_id}  service principal ${wif_sp_id}
                     -> parameter vertexWifEntraAudience = ${WIF_APP_ID_URI}
EOF
