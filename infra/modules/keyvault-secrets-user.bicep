// Lets one principal read the secrets of an existing Key Vault, whichever permission model the
// vault uses. A module, because the vault may live in another resource group than the app
// (main.bicep scopes it there), and because the model is a property read at deployment time:
// main.bicep passes the vault's enableRbacAuthorization in, and only a nested deployment may
// branch on such a value.
//   RBAC vault          -> role assignment "Key Vault Secrets User" on the vault
//   access-policy vault -> an access policy with secrets get + list, added (the vault's other
//                          policies stay: accessPolicies/add merges)

@description('Name of the existing Key Vault.')
param keyVaultName string

@description('Object (principal) ID of the managed identity.')
param principalId string

@description('Built-in role definition GUID (main.bicep passes Key Vault Secrets User).')
param roleDefinitionId string

@description('The vault\'s properties.enableRbacAuthorization: true for the RBAC model, false for access policies.')
param rbacAuthorization bool = true

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (rbacAuthorization) {
  name: guid(keyVault.id, principalId, roleDefinitionId)
  scope: keyVault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
  }
}

resource secretsPolicy 'Microsoft.KeyVault/vaults/accessPolicies@2023-07-01' = if (!rbacAuthorization) {
  parent: keyVault
  name: 'add'
  properties: {
    accessPolicies: [
      {
        tenantId: tenant().tenantId
        objectId: principalId
        permissions: {
          secrets: [
            'get'
            'list'
          ]
        }
      }
    ]
  }
}

output model string = rbacAuthorization ? 'rbac' : 'accessPolicy'
