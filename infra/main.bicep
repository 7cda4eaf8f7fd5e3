// LLM Router: Azure Functions on Azure Container Apps, with everything it needs around it.
//
// Creates: Log Analytics + workspace-based Application Insights, the AzureWebJobsStorage
// account, a Container Apps managed environment, a container registry, a Service Bus
// namespace + the `llm-router-requests` queue, one user-assigned managed identity with
// least-privilege role assignments, and the function app itself
// (Microsoft.Web/sites, kind 'functionapp,linux,container,azurecontainerapps').
//
// Two modes (parameter deploymentMode):
//   new      creates the Service Bus namespace and queue (and everything above);
//   existing the deployment guide's estate: its Service Bus namespace and queue (identity or the
//            guide's connection-string secret), its Key Vault whether it uses access policies or
//            RBAC (detected from the vault's enableRbacAuthorization), its secret names as they are.
// Both also create: the alert rules of docs/operations.md and the storage account Weaviate's
// backup-azure module writes to (the backup timer checks it).
//
// Uses but does not create: PostgreSQL, Redis, Weaviate and Key Vault. Their URLs and
// credentials live in the existing Key Vault as secrets; the app settings below are Key Vault
// references resolved by the platform with the user-assigned identity.
//
// Deploy: az deployment group create -g <rg> -f infra/main.bicep -p @infra/main.parameters.json
//     or: ... -p @infra/existing.parameters.json   (docs/deploy.md walks through both)

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

@description('new: create Service Bus (namespace + queue) here. existing: use the deployment guide\'s namespace and queue (serviceBusNamespaceName, serviceBusResourceGroup) and, if serviceBusConnectionSecretName is set, its connection-string secret.')
@allowed([
  'new'
  'existing'
])
param deploymentMode string = 'new'

@description('NCRONTAB schedule of the Weaviate backup check (seconds first).')
param backupCheckSchedule string = '0 0 */6 * * *'

@description('NCRONTAB schedule of the feedback-to-examples worker.')
param feedbackExamplesSchedule string = '0 */5 * * * *'

@description('Azure region for every resource created here.')
param location string = resourceGroup().location

@description('Lower-case letters and digits only; prefixes resource names (the registry name allows no dashes).')
@minLength(3)
@maxLength(11)
param namePrefix string = 'llmrouter'

@description('Tags applied to every resource.')
param tags object = {
  app: 'llm-router'
  environment: 'production'
}

@description('Name of the function app (its host name prefix). Functions on Container Apps allows at most 32 characters.')
@maxLength(32)
param functionAppName string = '${namePrefix}-func-${uniqueString(resourceGroup().id)}'

@description('User-assigned managed identity used by the app for Key Vault, Service Bus, storage, registry and telemetry. docs/deploy.md creates it first with `az identity create`; deploying this template again with the same name keeps the same identity.')
param identityName string = '${namePrefix}-id'

@description('Create the function app. The first deployment passes false: it creates the registry, identity roles and the rest, so the image can be built into the registry (and role assignments have time to propagate) before the app exists. docs/deploy.md step 6.')
param deployFunctionApp bool = true

@description('Full image reference, e.g. <registry>.azurecr.io/llm-router:<git sha>. Required when deployFunctionApp is true. The pipeline (.github/workflows/deploy.yml) sets the image on every push; pass the current one when you redeploy this template so the template does not roll the app back.')
param containerImage string = ''

@description('Port the Functions host listens on inside the container (the Dockerfile runs it as a non-root user on 8080; WEBSITES_PORT tells the platform).')
param containerPort int = 8080

@description('Minimum replicas. 1 keeps one warm instance (no cold start, the timer always has a host).')
@minValue(0)
param minReplicas int = 1

@description('Maximum replicas.')
@minValue(1)
param maxReplicas int = 3

@description('vCPU per replica (the deployment guide: 1.0 CPU / 2Gi).')
param cpuCores string = '1.0'

@description('Memory per replica (the deployment guide: 1.0 CPU / 2Gi).')
param memorySize string = '2Gi'

@description('Per-instance HTTP concurrency: host.json extensions.http.maxConcurrentRequests, set as an app-setting override so it is explicit in the infrastructure.')
@minValue(1)
param httpMaxConcurrentRequests int = 50

@description('Python worker processes per replica (FUNCTIONS_WORKER_PROCESS_COUNT).')
@minValue(1)
@maxValue(10)
param functionsWorkerProcessCount int = 2

// --- existing Key Vault and the secrets in it ----------------------------------------------------

@description('Name of the existing Key Vault that holds the app secrets. Either permission model: the template reads the vault\'s enableRbacAuthorization and grants "Key Vault Secrets User" (RBAC) or adds an access policy (get/list secrets).')
param keyVaultName string

@description('Resource group of the existing Key Vault (defaults to this one).')
param keyVaultResourceGroup string = resourceGroup().name

@description('Grant the identity read access to the vault\'s secrets (a role assignment or an access policy, whichever the vault uses). Set false when the grant was already made by hand (docs/deploy.md step 3): Azure rejects a second, identical role assignment under another name.')
param grantKeyVaultAccess bool = true

@description('Key Vault secret names: the deployment guide\'s names, accepted as they are (WEAVIATE-URL and WEAVIATE-API-KEY in upper case, the others llm-router-...). googleApplicationCredentials is read only when vertexAuth is jsonKey.')
param secretNames object = {
  databaseUrl: 'llm-router-database-url'
  redisUrl: 'llm-router-redis-url'
  jwtSecret: 'llm-router-jwt-secret'
  weaviateApiKey: 'WEAVIATE-API-KEY'
  weaviateUrl: 'WEAVIATE-URL'
  googleApplicationCredentials: 'llm-router-google-application-credentials'
  azureClientSecret: 'llm-router-azure-client-secret'
}

// --- Vertex AI and Entra ID ---------------------------------------------------------------------

@description('Google Cloud project that hosts Vertex AI.')
param googleCloudProjectId string

@description('Vertex AI region. Default us-central1: Google\'s reference region, where every Gemini model of the catalog (and new ones first) is served. The deployment guide used us-east1, which serves the catalog\'s Gemini 2.5 models too; existing.parameters.json keeps us-east1 so an estate already set up (quotas, data residency) does not move.')
param vertexAiLocation string = 'us-central1'

@description('How the app authenticates to Vertex AI. workloadIdentity (default, no key): the managed identity\'s Entra ID token for vertexWifEntraAudience is exchanged at Google STS for vertexWifProvider and vertexWifServiceAccount is impersonated (shared/providers/vertex_wif.py). jsonKey: the secret secretNames.googleApplicationCredentials holds a service-account key or credential configuration.')
@allowed([
  'workloadIdentity'
  'jsonKey'
])
param vertexAuth string = 'workloadIdentity'

@description('Workload identity provider: projects/<project NUMBER>/locations/global/workloadIdentityPools/<pool>/providers/<provider> (docs/deploy.md step 5).')
param vertexWifProvider string = ''

@description('Google service account the federated identity impersonates (roles/aiplatform.user).')
param vertexWifServiceAccount string = ''

@description('Application ID URI of the Entra ID app the managed identity gets tokens for; the provider must allow exactly this audience.')
param vertexWifEntraAudience string = 'api://llm-router-gcp-wif'

@description('Application ID URI of the Entra ID app registration that callers get tokens for (JWT audience). Empty: Entra ID tokens are not accepted, only HS256 service tokens.')
param azureAppIdUri string = ''

// --- Service Bus -------------------------------------------------------------------------------------

@description('Queue for async routing requests (the name the app defaults to). In existing mode, the guide\'s queue.')
param serviceBusQueueName string = 'llm-router-requests'

@description('existing mode: name of the guide\'s Service Bus namespace (without .servicebus.windows.net).')
param serviceBusNamespaceName string = ''

@description('existing mode: its resource group (defaults to this one).')
param serviceBusResourceGroup string = resourceGroup().name

@description('existing mode: Key Vault secret holding the namespace\'s connection string. Empty: identity-based (the identity gets Data Sender/Receiver on the queue). Set: the trigger and the sender both use this one secret (ServiceBusConnection), never two namespaces.')
param serviceBusConnectionSecretName string = ''

// --- Weaviate -------------------------------------------------------------------------------------

@description('Weaviate gRPC host (the v4 client searches over gRPC). Empty: the host of the WEAVIATE-URL secret.')
param weaviateGrpcHost string = ''

@description('Weaviate gRPC port: 50051 on a plain deployment; 443 when gRPC is published through an HTTPS ingress.')
param weaviateGrpcPort int = 50051

@description('TLS for gRPC: true, false, or empty to follow the scheme of WEAVIATE-URL.')
@allowed([
  ''
  'true'
  'false'
])
param weaviateGrpcSecure string = ''

@description('Create the storage account (and container) that Weaviate\'s backup-azure module writes to; docs/deploy.md step 4b sets Weaviate up to use it.')
param createBackupStorage bool = true

@description('Backups older than this many hours make the backup timer start a new one and alert.')
param backupMaxAgeHours int = 24

// --- alerts ------------------------------------------------------------------------------------------

@description('E-mail address of the on-call team for the alert rules (docs/operations.md). Empty: the rules are created without an action group.')
param alertEmail string = ''

@description('p95 latency of chat completions (ms) above which the latency alert fires.')
param alertLatencyP95Ms int = 10000

// ---------------------------------------------------------------------------------------------
// Names and built-in role definition IDs
// ---------------------------------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id)
var logAnalyticsName = '${namePrefix}-log-${suffix}'
var appInsightsName = '${namePrefix}-appi-${suffix}'
var storageAccountName = take('st${namePrefix}${suffix}', 24)
var environmentName = '${namePrefix}-env-${suffix}'
var registryName = take('${namePrefix}acr${suffix}', 50)
var isNew = deploymentMode == 'new'
var sbNamespaceName = isNew ? '${namePrefix}-sb-${suffix}' : serviceBusNamespaceName
var sbResourceGroup = isNew ? resourceGroup().name : serviceBusResourceGroup
var sbUsesConnectionString = !isNew && !empty(serviceBusConnectionSecretName)
var backupStorageName = take('stbk${namePrefix}${suffix}', 24)
var backupContainerName = 'weaviate-backups'
var prometheusMultiprocDir = '/tmp/prometheus-multiproc'

// Built-in roles (IDs are the same in every tenant).
var roleIds = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
}

// ---------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------------
// Telemetry: Log Analytics + workspace-based Application Insights
// ---------------------------------------------------------------------------------------------

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    IngestionMode: 'LogAnalytics'
    // Local (instrumentation-key) auth stays on so the Python OpenTelemetry exporter works
    // without code changes; the Functions host itself authenticates with Entra ID
    // (APPLICATIONINSIGHTS_AUTHENTICATION_STRING below + Monitoring Metrics Publisher).
    // Set true once the app passes the managed identity credential to configure_azure_monitor().
    DisableLocalAuth: false
  }
}

// ---------------------------------------------------------------------------------------------
// Storage for AzureWebJobsStorage (host locks, timer schedule/singleton leases, secrets)
// ---------------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    // checkov:skip=CKV_AZURE_206: AzureWebJobsStorage holds only host leases and timer state that the host recreates; geo-replication buys nothing here.
    name: 'Standard_LRS'
  }
  properties: {
    // checkov:skip=CKV_AZURE_43: The name is take('st' + namePrefix + uniqueString(), 24): lower-case letters and digits, 3-24 characters; checkov cannot evaluate the expression.
    // checkov:skip=CKV_AZURE_59: The Container Apps consumption environment has no fixed egress IP or VNet here, so the host reaches storage over the public endpoint, with Entra ID auth only (shared keys disabled).
    // checkov:skip=CKV_AZURE_35: Same reason as CKV_AZURE_59: a deny-by-default firewall would block the host; access is identity-only instead.
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Container registry (the pipeline pushes here; the app pulls with its managed identity)
// ---------------------------------------------------------------------------------------------

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: registryName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    // checkov:skip=CKV_AZURE_139: The pipeline runs on GitHub-hosted runners and the consumption environment has no VNet, so the registry stays reachable publicly; admin user and anonymous pull are off, access is Entra ID only.
    // checkov:skip=CKV_AZURE_166: Quarantine needs Premium and a scanner that releases images.
    adminUserEnabled: false
    anonymousPullEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

// ---------------------------------------------------------------------------------------------
// Service Bus: namespace + the async routing queue
// ---------------------------------------------------------------------------------------------

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' = if (isNew) {
  name: sbNamespaceName
  location: location
  tags: tags
  sku: {
    // Standard: duplicate detection is not available on Basic.
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    minimumTlsVersion: '1.2'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

// The lock duration matches host.json's extensions.serviceBus.maxAutoLockRenewalDuration
// ("00:05:00" = PT5M, also the Service Bus maximum lock duration). A message whose processing
// outlives the renewal window loses its lock and is delivered again, up to maxDeliveryCount,
// then dead-lettered. tests/test_infra_artifacts.py checks the two values stay equal.
resource requestsQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = if (isNew) {
  parent: serviceBus
  name: serviceBusQueueName
  properties: {
    lockDuration: 'PT5M'
    maxDeliveryCount: 10
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P1D'
    requiresSession: false
    enablePartitioning: false
    maxSizeInMegabytes: 1024
  }
}

// ---------------------------------------------------------------------------------------------
// Container Apps managed environment, logging to Log Analytics
// ---------------------------------------------------------------------------------------------

resource containerEnv 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logAnalytics.properties.customerId
        sharedKey: logAnalytics.listKeys().primarySharedKey
      }
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
    zoneRedundant: false
  }
}

// ---------------------------------------------------------------------------------------------
// Role assignments: least privilege for the one identity
// ---------------------------------------------------------------------------------------------

// Read access to the existing vault's secrets (values, nothing else). The vault may live in
// another resource group, so the grant is a module scoped there. Its permission model is read
// from the vault itself and passed in: a role assignment does nothing on an access-policy vault
// (the guide's), an access policy nothing on an RBAC one. A module, because an if() on a
// property read at deployment time is only allowed inside a nested deployment.
module keyVaultAccess 'modules/keyvault-secrets-user.bicep' = if (grantKeyVaultAccess) {
  name: 'llm-router-kv-secrets-user'
  scope: resourceGroup(keyVaultResourceGroup)
  params: {
    keyVaultName: keyVaultName
    principalId: appIdentity.properties.principalId
    roleDefinitionId: roleIds.keyVaultSecretsUser
    rbacAuthorization: keyVault.properties.?enableRbacAuthorization ?? false
  }
}

// Azure Service Bus Data Sender + Data Receiver, scoped to the one queue (not the namespace), in
// whichever resource group the namespace lives (this one in new mode, the guide's in existing).
// Not needed when the guide's connection string is used.
module queueRoles 'modules/servicebus-queue-roles.bicep' = if (!sbUsesConnectionString) {
  name: 'llm-router-queue-roles'
  scope: resourceGroup(sbResourceGroup)
  params: {
    namespaceName: sbNamespaceName
    queueName: serviceBusQueueName
    principalId: appIdentity.properties.principalId
    senderRoleId: roleIds.serviceBusDataSender
    receiverRoleId: roleIds.serviceBusDataReceiver
  }
  dependsOn: [
    requestsQueue
  ]
}

// Monitoring Metrics Publisher on Application Insights (Entra ID-authenticated ingestion).
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appIdentity.id, roleIds.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
  }
}

// AcrPull on the registry, so the platform pulls the image with the identity (no admin user).
resource registryPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, appIdentity.id, roleIds.acrPull)
  scope: registry
  properties: {
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.acrPull)
  }
}

// Storage Blob Data Owner on the host storage account: identity-based AzureWebJobsStorage
// (host lock and timer singleton leases are blob leases). No queue/table roles: the app has
// no blob or queue-storage triggers.
resource hostStorageBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roleIds.storageBlobDataOwner)
  scope: storage
  properties: {
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
  }
}

// ---------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------
// Storage for Weaviate backups (Weaviate's backup-azure module writes here; the backup timer
// lists and starts backups through Weaviate on backend "azure")
// ---------------------------------------------------------------------------------------------

resource backupStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = if (createBackupStorage) {
  name: backupStorageName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    // Geo-redundant: a backup is worth something only if it outlives the region.
    name: 'Standard_GRS'
  }
  properties: {
    // checkov:skip=CKV_AZURE_206: Checkov does not read a conditional resource body: the sku above is Standard_GRS (geo-redundant).
    // checkov:skip=CKV_AZURE_44: Checkov does not read a conditional resource body: minimumTlsVersion below is TLS1_2.
    // checkov:skip=CKV_AZURE_43: The name is take('stbk' + namePrefix + uniqueString(), 24): lower-case letters and digits, 3-24 characters; checkov cannot evaluate the expression.
    // checkov:skip=CKV_AZURE_59: Weaviate runs outside this template (its own VM or cluster, no fixed address known here), so the account stays reachable publicly; access needs the account key Weaviate holds.
    // checkov:skip=CKV_AZURE_35: Same reason as CKV_AZURE_59.
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource backupBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = if (createBackupStorage) {
  parent: backupStorage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 14
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 14
    }
  }
}

resource backupContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (createBackupStorage) {
  parent: backupBlobService
  name: backupContainerName
  properties: {
    publicAccess: 'None'
  }
}

// ---------------------------------------------------------------------------------------------
// App settings
// ---------------------------------------------------------------------------------------------

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
  scope: resourceGroup(keyVaultResourceGroup)
}

// vaultUri ends with '/'. No secret version: the platform follows the latest version
// (re-read within 24 hours, or at once on any configuration change or restart).
var vaultUri = keyVault.properties.vaultUri
var kvRef = {
  databaseUrl: '@Microsoft.KeyVault(SecretUri=${vaultUri}secrets/${secretNames.databaseUrl}/)'
  redisUrl: '@Microsoft.KeyVault(SecretUri=${vaultUri}secrets/${secretNames.redisUrl}/)'
  jwtSecret: '@Microsoft.KeyVault(SecretUri=${vaultUri}secrets/${secretNames.jwtSecret}/)'
  weaviateApiKey: '@Microsoft.KeyVault(SecretUri=${vaultUri}secrets/${secretNames.weaviateApiKey}/)'
  weaviateUrl: '@Microsoft.KeyVault(SecretUri=${vaultUri}secrets/${secretNames.weaviateUrl}/)'
  googleApplicationCredentials: '@Microsoft.KeyVault(SecretUri=${vaultUri}secrets/${secretNames.googleApplicationCredentials}/)'
  serviceBusConnection: '@Microsoft.KeyVault(SecretUri=${vaultUri}secrets/${serviceBusConnectionSecretName}/)'
}

// One namespace for the sender and the trigger: both read the ServiceBusConnection settings.
var serviceBusFqdn = '${sbNamespaceName}.servicebus.windows.net'

// App settings. Notes (kept out of the arrays: the parser checkov uses trips on comments there):
// * Host storage is identity-based (AzureWebJobsStorage__*): the account allows no shared keys.
// * FUNCTIONS_WORKER_RUNTIME=python and PYTHON_ENABLE_INIT_INDEXING=1: the Python 3.11 worker
//   needs init indexing for HTTP streaming; without it every HTTP function hangs in Azure. The
//   Dockerfile sets both too.
// * AzureFunctionsJobHost__extensions__http__maxConcurrentRequests is the explicit per-replica
//   HTTP concurrency (it overrides host.json extensions.http.maxConcurrentRequests).
// * PROMETHEUS_MULTIPROC_DIR: /metrics aggregates every worker process (prometheus_client
//   multiprocess mode); the Dockerfile creates the directory.
// * DATABASE_URL, REDIS_URL, WEAVIATE_URL, WEAVIATE_API_KEY, JWT_SECRET (and, with vertexAuth
//   jsonKey, GOOGLE_APPLICATION_CREDENTIALS_JSON) are Key Vault references resolved by the
//   platform with the user-assigned identity (keyVaultReferenceIdentity).
// * llm-router-azure-client-secret is deliberately NOT an app setting: with AZURE_CLIENT_ID
//   naming the managed identity, an AZURE_CLIENT_SECRET variable would make
//   DefaultAzureCredential try a client-secret login for the wrong client.
// * AZURE_CLIENT_ID is the user-assigned identity: DefaultAzureCredential and the Vertex AI
//   federation (VERTEX_WIF_*) pick it by client id.
// * Service Bus: the trigger (connection "ServiceBusConnection") and the sender read the same
//   settings. Identity-based: ServiceBusConnection__fullyQualifiedNamespace (+ credential,
//   clientId). With the guide's connection string: ServiceBusConnection (a Key Vault reference).
//   SERVICE_BUS_NAMESPACE / SERVICE_BUS_CONNECTION_STRING carry the same value for the app's
//   start-up code; readiness fails if they ever differ (shared/queue/servicebus.py).
// * Settings with an empty value are left out (the code's defaults apply), see filter() below.
// * WEBSITES_ENABLE_APP_SERVICE_STORAGE=false: the code is in the image, not on a share.
var commonSettings = [
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'python'
  }
  {
    name: 'PYTHON_ENABLE_INIT_INDEXING'
    value: '1'
  }
  {
    name: 'FUNCTIONS_WORKER_PROCESS_COUNT'
    value: string(functionsWorkerProcessCount)
  }
  {
    name: 'PROMETHEUS_MULTIPROC_DIR'
    value: prometheusMultiprocDir
  }
  {
    name: 'WEBSITES_PORT'
    value: string(containerPort)
  }
  {
    name: 'WEBSITES_ENABLE_APP_SERVICE_STORAGE'
    value: 'false'
  }
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storage.name
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: appIdentity.properties.clientId
  }
  {
    name: 'AzureFunctionsJobHost__extensions__http__maxConcurrentRequests'
    value: string(httpMaxConcurrentRequests)
  }
  {
    name: 'ENVIRONMENT'
    value: 'production'
  }
  {
    name: 'DATABASE_URL'
    value: kvRef.databaseUrl
  }
  {
    name: 'REDIS_URL'
    value: kvRef.redisUrl
  }
  {
    name: 'WEAVIATE_URL'
    value: kvRef.weaviateUrl
  }
  {
    name: 'WEAVIATE_API_KEY'
    value: kvRef.weaviateApiKey
  }
  {
    name: 'WEAVIATE_GRPC_HOST'
    value: weaviateGrpcHost
  }
  {
    name: 'WEAVIATE_GRPC_PORT'
    value: string(weaviateGrpcPort)
  }
  {
    name: 'WEAVIATE_GRPC_SECURE'
    value: weaviateGrpcSecure
  }
  {
    name: 'WEAVIATE_BACKUP_BACKEND'
    value: 'azure'
  }
  {
    name: 'BACKUP_MAX_AGE_HOURS'
    value: string(backupMaxAgeHours)
  }
  {
    name: 'JWT_SECRET'
    value: kvRef.jwtSecret
  }
  {
    name: 'AZURE_TENANT_ID'
    value: tenant().tenantId
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: appIdentity.properties.clientId
  }
  {
    name: 'AZURE_APP_ID_URI'
    value: azureAppIdUri
  }
  {
    name: 'KEY_VAULT_URL'
    value: vaultUri
  }
  {
    name: 'GOOGLE_CLOUD_PROJECT_ID'
    value: googleCloudProjectId
  }
  {
    name: 'VERTEX_AI_LOCATION'
    value: vertexAiLocation
  }
  {
    name: 'SERVICE_BUS_QUEUE'
    value: serviceBusQueueName
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${appIdentity.properties.clientId};Authorization=AAD'
  }
  {
    name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
    value: 'true'
  }
  {
    name: 'BACKUP_CHECK_SCHEDULE'
    value: backupCheckSchedule
  }
  {
    name: 'FEEDBACK_EXAMPLES_SCHEDULE'
    value: feedbackExamplesSchedule
  }
]

var vertexSettings = vertexAuth == 'workloadIdentity' ? [
  {
    name: 'VERTEX_WIF_PROVIDER'
    value: vertexWifProvider
  }
  {
    name: 'VERTEX_WIF_SERVICE_ACCOUNT'
    value: vertexWifServiceAccount
  }
  {
    name: 'VERTEX_WIF_ENTRA_AUDIENCE'
    value: vertexWifEntraAudience
  }
] : [
  {
    name: 'GOOGLE_APPLICATION_CREDENTIALS_JSON'
    value: kvRef.googleApplicationCredentials
  }
]

var serviceBusSettings = sbUsesConnectionString ? [
  {
    name: 'ServiceBusConnection'
    value: kvRef.serviceBusConnection
  }
  {
    name: 'SERVICE_BUS_CONNECTION_STRING'
    value: kvRef.serviceBusConnection
  }
] : [
  {
    name: 'ServiceBusConnection__fullyQualifiedNamespace'
    value: serviceBusFqdn
  }
  {
    name: 'ServiceBusConnection__credential'
    value: 'managedidentity'
  }
  {
    name: 'ServiceBusConnection__clientId'
    value: appIdentity.properties.clientId
  }
  {
    name: 'SERVICE_BUS_NAMESPACE'
    value: serviceBusFqdn
  }
]

var appSettings = filter(concat(commonSettings, vertexSettings, serviceBusSettings), s => !empty(s.value))

// ---------------------------------------------------------------------------------------------
// The function app (Azure Functions on Azure Container Apps): modules/functionapp.bicep,
// which also explains how scaling works for this resource type (HTTP concurrency and Service
// Bus queue length KEDA rules are derived from the triggers by the platform).
// ---------------------------------------------------------------------------------------------

module functionApp 'modules/functionapp.bicep' = if (deployFunctionApp) {
  name: 'llm-router-function-app'
  params: {
    name: functionAppName
    location: location
    tags: tags
    identityResourceId: appIdentity.id
    managedEnvironmentId: containerEnv.id
    containerImage: containerImage
    cpuCores: cpuCores
    memorySize: memorySize
    minReplicas: minReplicas
    maxReplicas: maxReplicas
    appSettings: appSettings
  }
  // The identity must hold its roles before the first container starts, or Key Vault
  // references and the image pull fail on the first revision.
  dependsOn: [
    keyVaultAccess
    queueRoles
    metricsPublisher
    registryPull
    hostStorageBlobOwner
  ]
}

// ---------------------------------------------------------------------------------------------
// Alert rules (docs/operations.md, "Alert rules"): log alerts on Application Insights, a
// metric alert on the queue's dead letters (new mode: the namespace is ours).
// ---------------------------------------------------------------------------------------------

module alerts 'modules/alerts.bicep' = {
  name: 'llm-router-alerts'
  params: {
    location: location
    tags: tags
    namePrefix: namePrefix
    appInsightsId: appInsights.id
    alertEmail: alertEmail
    latencyP95Ms: alertLatencyP95Ms
    backupMaxAgeHours: backupMaxAgeHours
    maxReplicas: maxReplicas
    serviceBusNamespaceId: isNew ? serviceBus.id : ''
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs (used by docs/deploy.md and the pipeline's repository variables)
// ---------------------------------------------------------------------------------------------

output functionAppName string = deployFunctionApp ? functionApp.outputs.name : ''
output functionAppHostName string = deployFunctionApp ? functionApp.outputs.defaultHostName : ''
output registryName string = registry.name
output registryLoginServer string = registry.properties.loginServer
output identityClientId string = appIdentity.properties.clientId
output identityPrincipalId string = appIdentity.properties.principalId
output serviceBusNamespace string = serviceBusFqdn
output serviceBusQueue string = serviceBusQueueName
output containerAppsEnvironmentName string = containerEnv.name
output applicationInsightsName string = appInsights.name
output backupStorageAccount string = createBackupStorage ? backupStorage.name : ''
output backupContainer string = createBackupStorage ? backupContainerName : ''
output alertRules array = alerts.outputs.ruleNames
