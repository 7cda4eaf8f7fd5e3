// Grants one principal a role on an existing Key Vault. A module, because the vault may live
// in another resource group than the app (main.bicep scopes it there).

@description('Name of the existing Key Vault (RBAC authorization model).')
param keyVaultName string

@description('Object (principal) ID of the managed identity.')
param principalId string

@description('Built-in role definition GUID (main.bicep passes Key Vault Secrets User).')
param roleDefinitionId string

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, principalId, roleDefinitionId)
  scope: keyVault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
  }
}

output roleAssignmentId string = secretsUser.id
