// The function app: Azure Functions on Azure Container Apps (a Microsoft.Web/sites resource
// whose containers run in a Container Apps managed environment). main.bicep calls this module
// once the registry, identity and role assignments exist.
//
// Scaling. This resource type cannot carry custom KEDA rules: the platform generates them.
// When the Functions host starts, Container Apps reads the app's triggers and creates the
// matching KEDA scalers for the backing container app:
//   * Service Bus trigger -> an azure-servicebus scaler on the queue's active message count,
//     with messageCount = host.json extensions.serviceBus.maxConcurrentCalls (the per-replica
//     target), authenticated with the ServiceBusConnection__* identity app settings.
//   * HTTP trigger -> the built-in HTTP concurrency scaler; what each replica accepts is set
//     explicitly by the AzureFunctionsJobHost__extensions__http__maxConcurrentRequests app
//     setting (main.bicep, parameter httpMaxConcurrentRequests).
//   * Timer trigger -> no scaler; each occurrence runs once, on the replica holding the
//     host's blob lease in AzureWebJobsStorage.
// minimumElasticInstanceCount and functionAppScaleLimit bound the replica count (1..3).
// Custom rules are possible only on the newer Microsoft.App/containerApps kind=functionapp
// resource (template.scale.allowScalingRuleOverride, a preview API), not used here.

@description('Function app name.')
param name string

param location string
param tags object

@description('Resource ID of the user-assigned identity (Key Vault references, image pull).')
param identityResourceId string

@description('Resource ID of the Container Apps managed environment.')
param managedEnvironmentId string

@description('Full image reference: <registry>.azurecr.io/llm-router:<tag>.')
param containerImage string

@description('vCPU per replica, as a string (Bicep has no decimal literals).')
param cpuCores string

@description('Memory per replica, e.g. 2Gi.')
param memorySize string

param minReplicas int
param maxReplicas int

@description('App settings (name/value pairs); Key Vault references included.')
param appSettings array

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux,container,azurecontainerapps'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityResourceId}': {}
    }
  }
  properties: {
    // checkov:skip=CKV_AZURE_17: Callers authenticate with bearer tokens (Entra ID or HS256), not client certificates.
    // checkov:skip=CKV_AZURE_212: numberOfWorkers is an App Service plan setting with no meaning on Container Apps; replicas are minimumElasticInstanceCount (1 by design, raise minReplicas to 2 for failover).
    // checkov:skip=CKV_AZURE_213: healthCheckPath is an App Service plan feature; on Container Apps the platform probes the container, and /health/live and /health/ready serve the pipeline's smoke test and external monitors.
    // checkov:skip=CKV_AZURE_222: The API is public by design; every call but /health/* needs a bearer token.
    managedEnvironmentId: managedEnvironmentId
    workloadProfileName: 'Consumption'
    resourceConfig: {
      cpu: json(cpuCores)
      memory: memorySize
    }
    httpsOnly: true
    keyVaultReferenceIdentity: identityResourceId
    siteConfig: {
      linuxFxVersion: 'DOCKER|${containerImage}'
      // Pull from the registry with the user-assigned identity (AcrPull in main.bicep). The
      // Functions on Container Apps samples pass the identity's resource ID here.
      acrUseManagedIdentityCreds: true
      acrUserManagedIdentityID: identityResourceId
      minimumElasticInstanceCount: minReplicas
      functionAppScaleLimit: maxReplicas
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: appSettings
    }
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
