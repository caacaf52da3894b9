"""The CRM edge: decision matrix, Salesforce adapter, local CRM, durable store and outbox."""
