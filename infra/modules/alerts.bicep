// The alert rules docs/operations.md describes ("Alert rules"), as code.
//
// Log alerts (Microsoft.Insights/scheduledQueryRules) query Application Insights; each fires when
// its query returns a row. A metric alert watches the Service Bus queue's dead letters when the
// namespace is the template's own (new mode). With alertEmail set, every rule notifies one action
// group (the on-call team); without it the rules still fire and show in Azure Monitor.

param location string
param tags object
param namePrefix string

@description('Resource ID of the Application Insights component the app reports to.')
param appInsightsId string

@description('On-call e-mail; empty: no action group.')
param alertEmail string

@description('p95 latency threshold of chat completions (ms).')
param latencyP95Ms int

@description('BACKUP_MAX_AGE_HOURS of the app: a failed or stale backup check is logged as an error.')
param backupMaxAgeHours int

@description('The app\'s maximum replica count (the resources rule fires when it is reached).')
param maxReplicas int

@description('Resource ID of the Service Bus namespace to watch for dead letters; empty: none.')
param serviceBusNamespaceId string

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: '${namePrefix}-oncall'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take('${namePrefix}oncall', 12)
    enabled: true
    emailReceivers: [
      {
        name: 'on-call'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = empty(alertEmail) ? [] : [
  actionGroup.id
]

// name, severity, window, frequency, query: one row returned = the rule fires
var logRules = [
  {
    name: 'availability'
    description: 'Fewer than 99% of requests succeeded in 5 minutes (with more than 20 requests).'
    severity: 1
    window: 'PT5M'
    frequency: 'PT5M'
    query: 'requests | summarize ok = countif(success == true), all = count() | where all > 20 and todouble(ok) / all < 0.99'
  }
  {
    name: 'latency-chat-p95'
    description: 'p95 duration of chat completions above the threshold over 5 minutes.'
    severity: 2
    window: 'PT5M'
    frequency: 'PT5M'
    query: 'requests | where name has "chat/completions" | summarize p95 = percentile(duration, 95) | where p95 > ${latencyP95Ms}'
  }
  {
    name: 'latency-decision-p95'
    description: 'p95 of the routing decision above 20 ms over 5 minutes.'
    severity: 3
    window: 'PT5M'
    frequency: 'PT5M'
    query: 'dependencies | where name == "route" | summarize p95 = percentile(todouble(customDimensions["llm_router.decision_ms"]), 95) | where p95 > 20'
  }
  {
    name: 'error-spike'
    description: 'HTTP 5xx in the last 5 minutes above 3x the hour\'s 5-minute average (at least 5).'
    severity: 2
    window: 'PT1H'
    frequency: 'PT5M'
    query: 'requests | summarize recent = countif(toint(resultCode) >= 500 and timestamp > ago(5m)), hour = countif(toint(resultCode) >= 500) | where recent >= 5 and recent > 3.0 * hour / 12.0'
  }
  {
    name: 'unexpected-exceptions'
    description: 'Exceptions other than the known upstream errors (shared/errors.py) in 5 minutes.'
    severity: 2
    window: 'PT5M'
    frequency: 'PT5M'
    query: 'exceptions | where outerType !startswith "shared.errors." and outerType !in ("UpstreamError", "UpstreamTimeout", "UpstreamUnavailable", "UpstreamRateLimited") | summarize n = count() | where n > 0'
  }
  {
    name: 'resources-cpu'
    description: 'Process CPU above 80% for 10 minutes (performance counters of the Python workers).'
    severity: 2
    window: 'PT10M'
    frequency: 'PT5M'
    query: 'performanceCounters | where name in ("% Processor Time Normalized", "Processor time (%)", "% Processor Time") | summarize cpu = avg(value) | where cpu > 80'
  }
  {
    name: 'resources-max-replicas'
    description: 'As many replicas reporting as maxReplicas for 15 minutes: scale-out is exhausted.'
    severity: 2
    window: 'PT15M'
    frequency: 'PT5M'
    query: 'requests | summarize replicas = dcount(cloud_RoleInstance) | where replicas >= ${maxReplicas}'
  }
  {
    name: 'backup-check-failed'
    description: 'The Weaviate backup check logged an error: no successful backup younger than ${backupMaxAgeHours} h, or the newest failed.'
    severity: 2
    window: 'PT6H'
    frequency: 'PT1H'
    query: 'traces | where severityLevel >= 3 and isnotempty(tostring(customDimensions["backup_action"])) | summarize n = count() | where n > 0'
  }
]

resource rules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in logRules: {
    name: '${namePrefix}-${rule.name}'
    location: location
    tags: tags
    properties: {
      displayName: 'LLM Router: ${rule.name}'
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        appInsightsId
      ]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      actions: {
        actionGroups: actions
      }
    }
  }
]

resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = if (!empty(serviceBusNamespaceId)) {
  name: '${namePrefix}-dead-letters'
  location: 'global'
  tags: tags
  properties: {
    description: 'Messages reached the dead-letter queue: a job failed maxDeliveryCount times or expired.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dead-lettered'
          metricName: 'DeadletteredMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
        }
      ]
    }
    autoMitigate: true
    actions: [for id in actions: {
      actionGroupId: id
    }]
  }
}

output ruleNames array = [for (rule, i) in logRules: rules[i].name]
