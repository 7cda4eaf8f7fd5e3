// Azure Service Bus Data Sender + Data Receiver for one principal, scoped to one queue (not the
// namespace). A module so that the queue may live in another resource group (the deployment
// guide's namespace, existing mode); main.bicep scopes it there.

@description('Service Bus namespace name (without .servicebus.windows.net).')
param namespaceName string

@description('Queue the app sends to and its trigger listens on.')
param queueName string

@description('Object (principal) ID of the managed identity.')
param principalId string

@description('Built-in role GUID: Azure Service Bus Data Sender.')
param senderRoleId string

@description('Built-in role GUID: Azure Service Bus Data Receiver.')
param receiverRoleId string

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: namespace
  name: queueName
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, principalId, senderRoleId)
  scope: queue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', senderRoleId)
  }
}

resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, principalId, receiverRoleId)
  scope: queue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', receiverRoleId)
  }
}

output queueId string = queue.id
