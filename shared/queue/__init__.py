"""Message queues for async routing jobs: Azure Service Bus, or an in-process stand-in."""
